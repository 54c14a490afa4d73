import { Button, Center, Paper, PasswordInput, Stack, Text, TextInput, Title } from "@mantine/core";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { api, ApiError } from "../api/client";
import type { Session } from "../api/types";
import { SESSION_KEY, SESSION_URL } from "../auth/session";
import { NonFieldError } from "../components/states";

export function LoginPage() {
  const client = useQueryClient();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const login = useMutation({
    mutationFn: async () => {
      await api.get<Session>(SESSION_URL); // sets the CSRF cookie
      return api.post<Session>(SESSION_URL, { username, password });
    },
    onSuccess: (session) => client.setQueryData(SESSION_KEY, session),
  });
  const error = login.error instanceof ApiError ? login.error : null;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    login.mutate();
  };
  return (
    <Center mih="100vh" p="md" component="main">
      <Paper withBorder shadow="sm" p="xl" w={380} component="form" onSubmit={submit}>
        <Stack>
          <Title order={1} size="h3">Warden console</Title>
          <Text size="sm" c="dimmed">Log in with your Warden user. The demo users' passwords are printed by make run.</Text>
          <TextInput label="Username" autoComplete="username" value={username} required
            onChange={(event) => setUsername(event.currentTarget.value)} error={error?.field("username")} />
          <PasswordInput label="Password" autoComplete="current-password" value={password} required
            onChange={(event) => setPassword(event.currentTarget.value)} error={error?.field("password")} />
          <NonFieldError error={login.error} />
          <Button type="submit" loading={login.isPending}>Log in</Button>
        </Stack>
      </Paper>
    </Center>
  );
}
