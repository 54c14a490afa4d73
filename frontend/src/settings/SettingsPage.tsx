import { Alert, Button, Card, Checkbox, Group, Modal, MultiSelect, PasswordInput, Select, Stack, Table, Tabs, Text, TextInput, Title } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useSearchParams } from "react-router";
import { api, ApiError, V1, type Page } from "../api/client";
import type { APIToken, APITokenCreated, ObjectChange, Role, User } from "../api/types";
import { roleLabel } from "../auth/roles";
import { useSession } from "../auth/session";
import { Empty, NonFieldError, QueryState } from "../components/states";
import { Pager, RoleButton, Secret, StatusBadge, when } from "../components/widgets";

const ROLES: Role[] = ["admin", "policy_author", "approver", "auditor"];

export function SettingsPage() {
  const [params, setParams] = useSearchParams();
  const session = useSession();
  const tab = params.get("tab") ?? "tokens";
  return (
    <Stack>
      <Title order={1} size="h2">Settings</Title>
      <Tabs value={tab} onChange={(value) => setParams(value ? { tab: value } : {}, { replace: true })}>
        <Tabs.List>
          <Tabs.Tab value="tokens">My API tokens</Tabs.Tab>
          <Tabs.Tab value="users">Users and roles</Tabs.Tab>
          <Tabs.Tab value="changes">Change log</Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="tokens" pt="md"><Tokens /></Tabs.Panel>
        <Tabs.Panel value="users" pt="md">{session.can("manage_users") ? <Users /> : <Alert color="gray" data-testid="role-reason">{session.whyNot("manage_users")} Ask an admin to change users or roles.</Alert>}</Tabs.Panel>
        <Tabs.Panel value="changes" pt="md"><Changes /></Tabs.Panel>
      </Tabs>
    </Stack>
  );
}

function Tokens() {
  const client = useQueryClient();
  const { user } = useSession();
  const tokens = useQuery({ queryKey: ["my-tokens"], queryFn: () => api.get<Page<APIToken>>(`${V1}/tokens/`, { user: user.username, limit: 200 }) });
  const [name, setName] = useState("");
  const [created, setCreated] = useState<APITokenCreated | null>(null);
  const create = useMutation({
    mutationFn: () => api.post<APITokenCreated>(`${V1}/tokens/`, { name }),
    onSuccess: (token) => { setCreated(token); setName(""); void client.invalidateQueries({ queryKey: ["my-tokens"] }); },
  });
  const revoke = useMutation({ mutationFn: (id: string) => api.del(`${V1}/tokens/${id}/`), onSuccess: () => void client.invalidateQueries({ queryKey: ["my-tokens"] }) });
  const error = create.error instanceof ApiError ? create.error : null;
  const mine = (tokens.data?.results ?? []).filter((token) => token.user === user.username);
  return (
    <Stack>
      <Group align="flex-end" component="form" onSubmit={(e) => { e.preventDefault(); create.mutate(); }}>
        <TextInput label="Token name" description="what will use it, e.g. ci-pipeline" value={name} onChange={(e) => setName(e.currentTarget.value)} error={error?.field("name")} required />
        <Button type="submit" loading={create.isPending}>Create token</Button>
      </Group>
      <NonFieldError error={create.error} />
      <QueryState query={tokens} what="tokens">
        {() => mine.length === 0 ? <Empty title="No API tokens">Create one for scripts and CI: send it as Authorization: Token &lt;token&gt;.</Empty> : (
          <Table>
            <Table.Thead><Table.Tr><Table.Th>Name</Table.Th><Table.Th>Prefix</Table.Th><Table.Th>Created</Table.Th><Table.Th>Last used</Table.Th><Table.Th /></Table.Tr></Table.Thead>
            <Table.Tbody>
              {mine.map((token) => (
                <Table.Tr key={token.id}>
                  <Table.Td>{token.name}</Table.Td><Table.Td><code>{token.prefix}</code></Table.Td><Table.Td>{when(token.created_at)}</Table.Td><Table.Td>{when(token.last_used_at)}</Table.Td>
                  <Table.Td>{token.revoked_at ? <StatusBadge value="revoked" /> : <Button size="xs" color="red" variant="light" onClick={() => revoke.mutate(token.id)} aria-label={`Revoke token ${token.name}`}>Revoke</Button>}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        )}
      </QueryState>
      <Modal opened={created !== null} onClose={() => setCreated(null)} title="Token created: copy it now" size="lg">
        {created && (
          <Stack>
            <Alert color="yellow">This is the only time the token is shown. Warden keeps only its hash, and the console does not store it.</Alert>
            <Secret label={`Token ${created.name}`} value={created.token} />
            <Button onClick={() => setCreated(null)}>I have copied it</Button>
          </Stack>
        )}
      </Modal>
    </Stack>
  );
}

function Users() {
  const client = useQueryClient();
  const users = useQuery({ queryKey: ["users"], queryFn: () => api.get<Page<User>>(`${V1}/users/`, { limit: 500 }) });
  const [form, setForm] = useState({ username: "", email: "", password: "", roles: [] as string[] });
  const [editing, setEditing] = useState<User | null>(null);
  const create = useMutation({
    mutationFn: () => api.post<User>(`${V1}/users/`, { ...form, password: form.password || undefined }),
    onSuccess: () => { setForm({ username: "", email: "", password: "", roles: [] }); void client.invalidateQueries({ queryKey: ["users"] }); },
  });
  const error = create.error instanceof ApiError ? create.error : null;
  const roleOptions = ROLES.map((role) => ({ value: role, label: roleLabel(role) }));
  return (
    <Stack>
      <Card withBorder component="form" onSubmit={(e) => { e.preventDefault(); create.mutate(); }}>
        <Title order={2} size="h4" mb="xs">Add a user</Title>
        <Group align="flex-start" wrap="wrap">
          <TextInput label="Username" value={form.username} onChange={(e) => setForm({ ...form, username: e.currentTarget.value })} error={error?.field("username")} required />
          <TextInput label="E-mail" value={form.email} onChange={(e) => setForm({ ...form, email: e.currentTarget.value })} error={error?.field("email")} />
          <PasswordInput label="Password" description="empty: a service account (token only)" value={form.password} onChange={(e) => setForm({ ...form, password: e.currentTarget.value })} error={error?.field("password")} />
          <MultiSelect label="Roles" searchable data={roleOptions} value={form.roles} onChange={(roles) => setForm({ ...form, roles })} error={error?.field("roles")} />
        </Group>
        <NonFieldError error={create.error} />
        <Button type="submit" mt="sm" loading={create.isPending}>Add user</Button>
      </Card>
      <QueryState query={users} what="users">
        {(page) => (
          <Table.ScrollContainer minWidth={640}>
            <Table striped>
              <Table.Thead><Table.Tr><Table.Th>Username</Table.Th><Table.Th>E-mail</Table.Th><Table.Th>Roles</Table.Th><Table.Th>Active</Table.Th><Table.Th>Last login</Table.Th><Table.Th /></Table.Tr></Table.Thead>
              <Table.Tbody>
                {page.results.map((user) => (
                  <Table.Tr key={user.id}>
                    <Table.Td>{user.username}</Table.Td><Table.Td>{user.email}</Table.Td><Table.Td>{user.roles.map(roleLabel).join(", ") || "none"}</Table.Td>
                    <Table.Td>{user.is_active ? "yes" : "no"}</Table.Td><Table.Td>{when(user.last_login)}</Table.Td>
                    <Table.Td><Button size="xs" variant="light" onClick={() => setEditing(user)} aria-label={`Edit ${user.username}`}>Edit</Button></Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        )}
      </QueryState>
      {editing && <EditUser user={editing} onClose={() => setEditing(null)} />}
    </Stack>
  );
}

function EditUser({ user, onClose }: { user: User; onClose: () => void }) {
  const client = useQueryClient();
  const [roles, setRoles] = useState<string[]>(user.roles);
  const [active, setActive] = useState(user.is_active);
  const [password, setPassword] = useState("");
  const save = useMutation({
    mutationFn: () => api.patch<User>(`${V1}/users/${user.username}/`, { roles, is_active: active, ...(password ? { password } : {}) }),
    onSuccess: () => { void client.invalidateQueries({ queryKey: ["users"] }); onClose(); },
  });
  const error = save.error instanceof ApiError ? save.error : null;
  return (
    <Modal opened onClose={onClose} title={`Edit ${user.username}`}>
      <Stack>
        <MultiSelect label="Roles" data={ROLES.map((role) => ({ value: role, label: roleLabel(role) }))} value={roles} onChange={setRoles} error={error?.field("roles")} />
        <Checkbox label="Active (may log in and use tokens)" checked={active} onChange={(e) => setActive(e.currentTarget.checked)} error={error?.field("is_active")} />
        <PasswordInput label="New password (leave empty to keep)" value={password} onChange={(e) => setPassword(e.currentTarget.value)} error={error?.field("password")} />
        <NonFieldError error={save.error} />
        <Group justify="flex-end"><Button variant="default" onClick={onClose}>Cancel</Button><RoleButton capability="manage_users" onClick={() => save.mutate()} loading={save.isPending}>Save</RoleButton></Group>
      </Stack>
    </Modal>
  );
}

const LIMIT = 25;

function Changes() {
  const [params, setParams] = useSearchParams();
  const value = (key: string) => params.get(key) ?? "";
  const set = (key: string, next: string | null) => {
    const copy = new URLSearchParams(params);
    if (next) copy.set(key, next);
    else copy.delete(key);
    if (key !== "offset") copy.delete("offset");
    setParams(copy, { replace: true });
  };
  const [search] = useDebouncedValue(value("search"), 250);
  const offset = Number(value("offset") || 0);
  const filters = { search, action: value("action"), object_type: value("object_type"), user: value("user") };
  const changes = useQuery({
    queryKey: ["changes", filters, offset],
    queryFn: () => api.get<Page<ObjectChange>>(`${V1}/changes/`, { ...filters, limit: LIMIT, offset, ordering: "-time" }),
    placeholderData: keepPreviousData,
  });
  const [open, setOpen] = useState<ObjectChange | null>(null);
  return (
    <Stack>
      <Group align="flex-end" wrap="wrap">
        <TextInput label="Search" value={value("search")} onChange={(e) => set("search", e.currentTarget.value)} />
        <Select label="Action" clearable data={["create", "update", "delete", "suspend", "resume", "revoke", "rotate", "publish", "promote", "rollback", "rebuild"]} value={value("action") || null} onChange={(v) => set("action", v)} />
        <TextInput label="Object type" placeholder="e.g. identity.agent" value={value("object_type")} onChange={(e) => set("object_type", e.currentTarget.value)} />
        <TextInput label="User" value={value("user")} onChange={(e) => set("user", e.currentTarget.value)} />
      </Group>
      <QueryState query={changes} what="changes">
        {(page) => page.count === 0 ? <Empty title="No change matches">Every write through the API or the console is recorded here.</Empty> : (
          <>
            <Table.ScrollContainer minWidth={700}>
              <Table striped>
                <Table.Thead><Table.Tr><Table.Th>Time</Table.Th><Table.Th>User</Table.Th><Table.Th>Action</Table.Th><Table.Th>Object</Table.Th><Table.Th>Message</Table.Th><Table.Th /></Table.Tr></Table.Thead>
                <Table.Tbody>
                  {page.results.map((change) => (
                    <Table.Tr key={change.id}>
                      <Table.Td>{when(change.time)}</Table.Td><Table.Td>{change.user || "system"}</Table.Td><Table.Td>{String(change.action)}</Table.Td>
                      <Table.Td>{change.object_type}: {change.object_repr}</Table.Td><Table.Td>{change.message}</Table.Td>
                      <Table.Td><Button size="xs" variant="subtle" onClick={() => setOpen(change)} aria-label={`Show the data of change ${change.id}`}>Data</Button></Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
            <Pager count={page.count} limit={LIMIT} offset={offset} onOffset={(o) => set("offset", String(o))} />
          </>
        )}
      </QueryState>
      <Modal opened={open !== null} onClose={() => setOpen(null)} title="Change data" size="xl">
        {open && (
          <Group align="flex-start" grow>
            <div><Text fw={600} size="sm">Before</Text><pre style={{ fontSize: 11, overflowX: "auto" }}>{JSON.stringify(open.prechange_data, null, 2)}</pre></div>
            <div><Text fw={600} size="sm">After</Text><pre style={{ fontSize: 11, overflowX: "auto" }}>{JSON.stringify(open.postchange_data, null, 2)}</pre></div>
          </Group>
        )}
      </Modal>
    </Stack>
  );
}
