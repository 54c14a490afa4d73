/** What a list page's footer says: "51–100 of 240", or "of 10,000+" when the API stopped
 * counting (`count_is_capped`: the audit events list counts up to 10,000 matches). */
export function pagerText(count: number, limit: number, offset: number, capped = false): string {
  if (count === 0) return "0 of 0";
  const total = capped ? `${count.toLocaleString("en-US")}+` : String(count);
  return `${offset + 1}–${Math.min(offset + limit, count)} of ${total}`;
}

/** Pages to offer: a capped count has at least one more page than it counted. */
export function pageCount(count: number, limit: number, capped = false): number {
  return Math.max(1, Math.ceil(count / limit) + (capped && count % limit === 0 ? 1 : 0));
}
