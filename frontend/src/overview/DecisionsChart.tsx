import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { HourBucket } from "./summary";

export function DecisionsChart({ data }: { data: HourBucket[] }) {
  return (
    <div style={{ width: "100%", height: 220 }} role="img" aria-label="Decisions per hour over the last 24 hours, by effect">
      <ResponsiveContainer>
        <BarChart data={data}>
          <CartesianGrid strokeDasharray="3 3" />
          <XAxis dataKey="hour" interval={3} fontSize={12} />
          <YAxis allowDecimals={false} fontSize={12} />
          <Tooltip />
          <Legend />
          <Bar dataKey="allow" stackId="d" fill="#2f9e44" name="allow" />
          <Bar dataKey="require_approval" stackId="d" fill="#f08c00" name="require approval" />
          <Bar dataKey="deny" stackId="d" fill="#e03131" name="deny" />
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}
