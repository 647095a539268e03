// Names for the networking, PXE, join-token and session schemas the UI uses (from the
// generated schema.d.ts), kept apart from types.ts so pages added in parallel do not collide.
import type { components } from "./schema";

type S = components["schemas"];
export type NetworkConfig = S["NetworkConfig"];
export type NetworkStatus = S["NetworkStatus"];
export type NetworkPlan = S["NetworkPlan"];
export type NetworkApplied = S["NetworkApplied"];
export type NetworkOutcome = S["NetworkOutcome"];
export type Overlay = S["Overlay"];
export type OverlaysPost = S["OverlaysPost"];
export type JoinTokenCreated = S["JoinTokenCreated"];
export type SessionInfo = S["SessionInfo"];
export type PxeSettingsView = S["PxeSettingsView"];
export type EnlistedMachine = S["EnlistedMachine"];
