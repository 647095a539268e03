import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { ChangePasswordForm, newPasswordError } from "./Login";
import { SessionProvider } from "../session";

afterEach(cleanup);

function renderForm() {
  // whoami answers 401: the provider settles as anonymous; the form is shown on its own.
  vi.stubGlobal(
    "fetch",
    vi.fn(async () => new Response(JSON.stringify({ status: 401, title: "Unauthorized" }), { status: 401 })),
  );
  return render(
    <QueryClientProvider client={new QueryClient()}>
      <SessionProvider>
        <ChangePasswordForm user="admin" current="initial-password-123" />
      </SessionProvider>
    </QueryClientProvider>,
  );
}

describe("newPasswordError", () => {
  it("checks length and difference from the current password", () => {
    expect(newPasswordError("", "x")).toBeUndefined();
    expect(newPasswordError("short", "x")).toBe("At least 12 characters (5 so far)");
    expect(newPasswordError("a".repeat(257), "x")).toBe("At most 256 characters");
    expect(newPasswordError("same-as-before-1", "same-as-before-1")).toMatch(/other than the current/);
    expect(newPasswordError("a good new password", "x")).toBeUndefined();
  });
});

describe("ChangePasswordForm", () => {
  it("validates as the user types and enables the button only when both fields agree", () => {
    renderForm();
    const button = screen.getByRole("button", { name: "Change password and continue" });
    expect(button).toHaveProperty("disabled", true);
    fireEvent.change(screen.getByLabelText(/^New password/, { selector: "#new-password" }), {
      target: { value: "short" },
    });
    expect(screen.getByText("At least 12 characters (5 so far)")).toBeTruthy();
    fireEvent.change(screen.getByLabelText(/^New password/, { selector: "#new-password" }), {
      target: { value: "a long new password" },
    });
    fireEvent.change(screen.getByLabelText(/again/), { target: { value: "a long new passwor" } });
    expect(screen.getByText("The two passwords differ")).toBeTruthy();
    fireEvent.change(screen.getByLabelText(/again/), { target: { value: "a long new password" } });
    expect(screen.queryByText("The two passwords differ")).toBeNull();
    expect(button).toHaveProperty("disabled", false);
  });
});
