// Conflicts page: not built yet (issue 12).
import type { PageProps } from "../main";

export function Conflicts(_props: PageProps) {
  return <p class="muted">This page is not built yet.</p>;
}
