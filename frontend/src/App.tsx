import { AppShell, Badge, Burger, Button, Group, NavLink, ScrollArea, Stack, Text, Title } from "@mantine/core";
import { useDisclosure } from "@mantine/hooks";
import { useQueryClient } from "@tanstack/react-query";
import { lazy, Suspense, type ComponentType } from "react";
import { NavLink as RouterNavLink, Route, Routes, useLocation } from "react-router";
import { api } from "./api/client";
import { roleLabel } from "./auth/roles";
import { SESSION_KEY, SESSION_URL, SessionProvider, useSession, useSessionQuery } from "./auth/session";
import { Failure, Loading } from "./components/states";
import { AlertCount } from "./detection/AlertCount";
import { LoginPage } from "./login/LoginPage";

const page = (load: () => Promise<Record<string, ComponentType>>, name: string) =>
  lazy(async () => ({ default: (await load())[name] as ComponentType }));

const OverviewPage = page(() => import("./overview/OverviewPage"), "OverviewPage");
const AgentsPage = page(() => import("./agents/AgentsPage"), "AgentsPage");
const AgentDetailPage = page(() => import("./agents/AgentDetailPage"), "AgentDetailPage");
const SandboxProfilePage = page(() => import("./agents/SandboxProfilePage"), "SandboxProfilePage");
const DelegationRulePage = page(() => import("./agents/DelegationRulePage"), "DelegationRulePage");
const PoliciesPage = page(() => import("./policies/PoliciesPage"), "PoliciesPage");
const PlaygroundPage = page(() => import("./playground/PlaygroundPage"), "PlaygroundPage");
const EnvironmentsPage = page(() => import("./environments/EnvironmentsPage"), "EnvironmentsPage");
const AuditPage = page(() => import("./audit/AuditPage"), "AuditPage");
const CompliancePage = page(() => import("./compliance/CompliancePage"), "CompliancePage");
const SettingsPage = page(() => import("./settings/SettingsPage"), "SettingsPage");
const AuthoringPage = page(() => import("./authoring/AuthoringPage"), "AuthoringPage");
const ApprovalsPage = page(() => import("./approvals/ApprovalsPage"), "ApprovalsPage");
const AlertsPage = page(() => import("./detection/AlertsPage"), "AlertsPage");

// Later pages (approvals, attestations, alerts) add one line here and one route below.
const NAV = [
  { to: "/", label: "Overview" },
  { to: "/agents", label: "Agents" },
  { to: "/approvals", label: "Approvals" },
  { to: "/alerts", label: "Alerts" },
  { to: "/policies", label: "Policies" },
  { to: "/authoring", label: "Rule authoring" },
  { to: "/playground", label: "Playground" },
  { to: "/environments", label: "Environments" },
  { to: "/audit", label: "Audit" },
  { to: "/compliance", label: "Compliance" },
  { to: "/settings", label: "Settings" },
];

export function App() {
  const session = useSessionQuery();
  if (session.isPending) return <Loading what="your session" />;
  if (session.error) return <Failure error={session.error} retry={() => void session.refetch()} />;
  if (!session.data?.authenticated || !session.data.user) return <LoginPage />;
  return (
    <SessionProvider user={session.data.user}>
      <Shell />
    </SessionProvider>
  );
}

function Shell() {
  const [opened, { toggle, close }] = useDisclosure();
  const { user, roles } = useSession();
  const location = useLocation();
  const client = useQueryClient();
  const logout = async () => {
    await api.del(SESSION_URL).catch(() => undefined);
    // Forget every answer of this user; the session query flips the app to the login form.
    client.removeQueries({ predicate: (query) => query.queryKey[0] !== SESSION_KEY[0] });
    client.setQueryData(SESSION_KEY, { authenticated: false, user: null, csrf_token: "", expires_in: 0 });
  };
  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 210, breakpoint: "sm", collapsed: { mobile: !opened } }} padding="md">
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label="Toggle navigation" />
            <Title order={2} size="h4">Warden</Title>
          </Group>
          <Group gap="sm" wrap="nowrap">
            {/* Notifications area: later issues (approvals, alerts) put their counters here. */}
            <div id="notifications-area" aria-live="polite"><AlertCount /></div>
            <Text size="sm" visibleFrom="xs" data-testid="current-user">{user.username}</Text>
            {roles.map((role) => (
              <Badge key={role} variant="outline" color="dark" visibleFrom="xs" data-testid="current-role">{roleLabel(role)}</Badge>
            ))}
            <Button size="xs" variant="default" onClick={() => void logout()}>Log out</Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" aria-label="Main">
        <ScrollArea>
          <Stack gap={2} component="nav">
            {NAV.map((item) => (
              <NavLink
                key={item.to}
                component={RouterNavLink}
                to={item.to}
                label={item.label}
                onClick={close}
                active={item.to === "/" ? location.pathname === "/" : location.pathname.startsWith(item.to)}
              />
            ))}
          </Stack>
        </ScrollArea>
      </AppShell.Navbar>
      <AppShell.Main>
        <main>
          <Suspense fallback={<Loading what="the page" />}>
            <Routes>
              <Route path="/" element={<OverviewPage />} />
              <Route path="/agents" element={<AgentsPage />} />
              <Route path="/agents/:name" element={<AgentDetailPage />} />
              <Route path="/agents/:name/sandbox" element={<SandboxProfilePage />} />
              <Route path="/agents/:name/delegation" element={<DelegationRulePage />} />
              <Route path="/approvals/*" element={<ApprovalsPage />} />
              <Route path="/alerts" element={<AlertsPage />} />
              <Route path="/policies/*" element={<PoliciesPage />} />
              <Route path="/authoring/*" element={<AuthoringPage />} />
              <Route path="/playground" element={<PlaygroundPage />} />
              <Route path="/environments/*" element={<EnvironmentsPage />} />
              <Route path="/audit/*" element={<AuditPage />} />
              <Route path="/compliance/*" element={<CompliancePage />} />
              <Route path="/settings/*" element={<SettingsPage />} />
              <Route path="*" element={<Failure error="This page does not exist. Choose a page in the navigation." />} />
            </Routes>
          </Suspense>
        </main>
      </AppShell.Main>
    </AppShell>
  );
}
