// The frame around every page: masthead (brand, live status, the user's menu with logout),
// the navigation, and the page itself in the main region (with a skip link for keyboards).
import { useState, type ReactNode } from "react";
import { useLocation, useNavigate } from "react-router-dom";
import {
  Dropdown,
  DropdownItem,
  DropdownList,
  Label,
  Masthead,
  MastheadBrand,
  MastheadContent,
  MastheadLogo,
  MastheadMain,
  MastheadToggle,
  MenuToggle,
  Nav,
  NavItem,
  NavList,
  Page,
  PageSidebar,
  PageSidebarBody,
  PageToggleButton,
  SkipToContent,
  Toolbar,
  ToolbarContent,
  ToolbarGroup,
  ToolbarItem,
} from "./pf";
import { useStreamStatus } from "./live";
import { can, useMe, useSession } from "./session";

const MAIN_ID = "main";

export interface NavEntry {
  path: string;
  label: string;
  permission: string;
}

export const NAV: NavEntry[] = [
  { path: "/", label: "Dashboard", permission: "node:read" },
  { path: "/nodes", label: "Nodes", permission: "node:read" },
  { path: "/users", label: "Users", permission: "users:manage" },
  { path: "/audit", label: "Audit log", permission: "audit:read" },
  { path: "/tokens", label: "API tokens", permission: "self:manage" },
  { path: "/networks", label: "Networking", permission: "network:read" },
  { path: "/access", label: "Join tokens and sessions", permission: "self:manage" },
];

export function isCurrent(entry: string, pathname: string): boolean {
  return entry === "/" ? pathname === "/" : pathname === entry || pathname.startsWith(`${entry}/`);
}

function LiveLabel() {
  const status = useStreamStatus();
  if (status === "live") return <Label color="green" isCompact>Live</Label>;
  if (status === "stopped") return null;
  return (
    <Label color="orange" isCompact>
      {status === "connecting" ? "Connecting" : "Reconnecting"}
    </Label>
  );
}

function UserMenu() {
  const me = useMe();
  const session = useSession();
  const navigate = useNavigate();
  const [open, setOpen] = useState(false);
  return (
    <Dropdown
      isOpen={open}
      onOpenChange={setOpen}
      onSelect={() => setOpen(false)}
      popperProps={{ position: "right" }}
      toggle={(ref) => (
        <MenuToggle ref={ref} variant="plainText" isExpanded={open} onClick={() => setOpen(!open)}>
          {me.user} ({me.role})
        </MenuToggle>
      )}
    >
      <DropdownList>
        <DropdownItem key="logout" onClick={() => void session.logout().finally(() => navigate("/"))}>
          Log out
        </DropdownItem>
      </DropdownList>
    </Dropdown>
  );
}

export function Shell({ children }: { children: ReactNode }) {
  const me = useMe();
  const location = useLocation();
  const navigate = useNavigate();
  const entries = NAV.filter((e) => can(me, e.permission));

  const masthead = (
    <Masthead>
      <MastheadMain>
        <MastheadToggle>
          <PageToggleButton isHamburgerButton aria-label="Show or hide the navigation" />
        </MastheadToggle>
        <MastheadBrand>
          <MastheadLogo
            href="/"
            onClick={(e) => {
              e.preventDefault();
              navigate("/");
            }}
          >
            DebVisor
          </MastheadLogo>
        </MastheadBrand>
      </MastheadMain>
      <MastheadContent>
        <Toolbar isFullHeight isStatic>
          <ToolbarContent>
            <ToolbarGroup align={{ default: "alignEnd" }} alignItems="center">
              <ToolbarItem>
                <LiveLabel />
              </ToolbarItem>
              <ToolbarItem>
                <UserMenu />
              </ToolbarItem>
            </ToolbarGroup>
          </ToolbarContent>
        </Toolbar>
      </MastheadContent>
    </Masthead>
  );

  const sidebar = (
    <PageSidebar>
      <PageSidebarBody>
        <Nav aria-label="Cluster">
          <NavList>
            {entries.map((entry) => (
              <NavItem
                key={entry.path}
                itemId={entry.path}
                to={entry.path}
                isActive={isCurrent(entry.path, location.pathname)}
                onClick={(event) => {
                  event.preventDefault();
                  navigate(entry.path);
                }}
              >
                {entry.label}
              </NavItem>
            ))}
          </NavList>
        </Nav>
      </PageSidebarBody>
    </PageSidebar>
  );

  return (
    <Page
      masthead={masthead}
      sidebar={sidebar}
      isManagedSidebar
      skipToContent={<SkipToContent href={`#${MAIN_ID}`}>Skip to content</SkipToContent>}
      mainContainerId={MAIN_ID}
    >
      {children}
    </Page>
  );
}
