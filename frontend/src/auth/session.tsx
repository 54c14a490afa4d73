import { useQuery, useQueryClient } from "@tanstack/react-query";
import { createContext, useContext, useEffect, type ReactNode } from "react";
import { api, setUnauthorizedHandler, V1 } from "../api/client";
import type { Role, Session, User } from "../api/types";
import { can, whyNot, type Capability } from "./roles";

export const SESSION_KEY = ["console-session"] as const;
export const SESSION_URL = `${V1}/console/session/`;

interface SessionValue {
  user: User;
  roles: Role[];
  can: (capability: Capability) => boolean;
  whyNot: (capability: Capability) => string;
}

const SessionContext = createContext<SessionValue | null>(null);

export function useSessionQuery() {
  return useQuery({ queryKey: SESSION_KEY, queryFn: () => api.get<Session>(SESSION_URL), staleTime: 60_000 });
}

export function SessionProvider({ user, children }: { user: User; children: ReactNode }) {
  const client = useQueryClient();
  useEffect(() => {
    // Any 401 means the session expired: back to the login form.
    setUnauthorizedHandler(() => void client.invalidateQueries({ queryKey: SESSION_KEY }));
    return () => setUnauthorizedHandler(null);
  }, [client]);
  const roles = user.roles;
  const value: SessionValue = {
    user,
    roles,
    can: (capability) => can(roles, capability),
    whyNot: (capability) => whyNot(roles, capability),
  };
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error("useSession outside SessionProvider");
  return value;
}
