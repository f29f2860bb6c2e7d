// The dashboard's pages, in navigation order. Each is one file under pages/ exporting a
// component taking PageProps; `needs` hides a page (its link and route) from a role without
// that permission (the API refuses its calls anyway).
import type { FunctionComponent } from "preact";
import type { PageProps } from "../main";
import { Overview } from "./Overview";
import { Servers } from "./Servers";
import { Syncs } from "./Syncs";
import { Conflicts } from "./Conflicts";
import { Backups } from "./Backups";
import { Transfer } from "./Transfer";
import { Schema } from "./Schema";
import { DataDiff } from "./DataDiff";
import { Health } from "./Health";
import { Jobs } from "./Jobs";
import { Audit } from "./Audit";

export type PageDef = { id: string; title: string; needs?: string; component: FunctionComponent<PageProps> };

export const PAGES: PageDef[] = [
  { id: "overview", title: "Overview", component: Overview },
  { id: "servers", title: "Servers", needs: "servers:read", component: Servers },
  { id: "syncs", title: "Syncs", component: Syncs },
  { id: "conflicts", title: "Conflicts", component: Conflicts },
  { id: "backups", title: "Backups", component: Backups },
  { id: "transfer", title: "Export / Import", component: Transfer },
  { id: "schema", title: "Schema & migrations", needs: "migration:read", component: Schema },
  { id: "datadiff", title: "Data diff", component: DataDiff },
  { id: "health", title: "Health", component: Health },
  { id: "jobs", title: "Jobs", component: Jobs },
  { id: "audit", title: "Audit", needs: "audit:read", component: Audit },
];

export type Page = string;

/** The page id of a location hash: `#/conflicts/dst/7` → "conflicts"; unknown → "overview". */
export function pageFor(hash: string): Page {
  const id = hash.replace(/^#\/?/, "").split("/")[0];
  return PAGES.some((p) => p.id === id) ? id : "overview";
}

/** The segments after the page id: `#/conflicts/dst/7` → ["dst", "7"] (decoded). */
export function subPath(hash: string): string[] {
  return hash
    .replace(/^#\/?/, "")
    .split("/")
    .slice(1)
    .filter(Boolean)
    .map(decodeURIComponent);
}
