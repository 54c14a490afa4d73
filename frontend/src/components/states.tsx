import { Alert, Button, Center, Group, Loader, Stack, Text } from "@mantine/core";
import type { ReactNode } from "react";
import { ApiError } from "../api/client";

export function Loading({ what }: { what: string }) {
  return (
    <Center py="xl" role="status" aria-live="polite">
      <Group gap="sm">
        <Loader size="sm" aria-hidden />
        <Text c="dimmed">Loading {what}…</Text>
      </Group>
    </Center>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <Stack align="center" py="xl" gap={4} data-testid="empty-state">
      <Text fw={600}>{title}</Text>
      {children && <Text c="dimmed" ta="center" maw={520}>{children}</Text>}
    </Stack>
  );
}

export function Failure({ error, retry }: { error: unknown; retry?: () => void }) {
  const message = error instanceof ApiError ? error.message : error instanceof Error ? error.message : String(error);
  const title = error instanceof ApiError && error.status === 403 ? "Not allowed" : "Something went wrong";
  return (
    <Alert color="red" title={title} role="alert" my="md">
      <Stack gap="xs" align="flex-start">
        <Text size="sm">{message}</Text>
        {retry && (
          <Button size="xs" variant="light" color="red" onClick={retry}>
            Retry
          </Button>
        )}
      </Stack>
    </Alert>
  );
}

/** Query result → loading, error or content. */
export function QueryState<T>({
  query,
  what,
  children,
}: {
  query: { data: T | undefined; error: unknown; isPending: boolean; refetch: () => unknown };
  what: string;
  children: (data: T) => ReactNode;
}) {
  if (query.isPending) return <Loading what={what} />;
  if (query.error || query.data === undefined) return <Failure error={query.error} retry={() => void query.refetch()} />;
  return <>{children(query.data)}</>;
}

export function NonFieldError({ error }: { error: unknown }) {
  if (!error) return null;
  if (error instanceof ApiError) {
    const general = [...(error.fields.detail ?? []), ...(error.fields.non_field_errors ?? [])];
    if (error.status === 0 || error.status >= 500 || error.status === 403 || error.status === 409 || general.length)
      return <Alert color="red" role="alert">{general.join(" ") || error.message}</Alert>;
    return null;
  }
  return <Alert color="red" role="alert">{String(error)}</Alert>;
}
