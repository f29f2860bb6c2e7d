// Syncs page: not built yet (issue 12).
import type { PageProps } from "../main";

export function Syncs(_props: PageProps) {
  return <p class="muted">This page is not built yet.</p>;
}
