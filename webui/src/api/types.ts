// Names for the API's schemas the UI uses, taken from the generated schema.d.ts (which is
// generated from the node's OpenAPI document: see scripts/api-types.mjs).
import type { components } from "./schema";

type S = components["schemas"];
export type Whoami = S["Whoami"];
export type SessionCreated = S["SessionCreated"];
export type PasswordChanged = S["PasswordChanged"];
export type ClusterSummary = S["ClusterSummary"];
export type NodeMember = S["NodeMember"];
export type NodeFacts = S["NodeFacts"];
export type Node = S["Node"];
export type AuditEntry = S["AuditEntry"];
export type AuditPage = S["AuditPage"];
export type User = S["User"];
export type Role = S["Role"];
export type Problem = S["ProblemDetails"];
export type FieldError = S["FieldError"];
export type UsersPost = S["UsersPost"];
export type Token = S["Token"];
export type TokenCreated = S["TokenCreated"];
export type TokensPost = S["TokensPost"];
export type History = S["History"];
export type Unit = S["Unit"];
export type UnitDetails = S["UnitDetails"];
export type UnitActionResult = S["UnitActionResult"];
export type JournalEntry = S["JournalEntry"];
export type JournalPage = S["JournalPage"];
export type PowerPost = S["PowerPost"];
export type PowerAccepted = S["PowerAccepted"];
