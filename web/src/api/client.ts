// The dashboard's typed API client: a thin fetch wrapper over the types that
// openapi-typescript generated from the binary's OpenAPI document (schema.d.ts). A path, a
// parameter or an answer's shape the UI relies on that changes in the API fails `tsc`.
//
// The token is sent only in the Authorization header (never in a URL, so never in a log).
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Permission = string;

type JsonOf<R> = R extends { content: { "application/json": infer T } } ? T : never;
type Ok<Op> = Op extends { responses: { 200: infer R } } ? JsonOf<R> : never;
type PathParams<Op> = Op extends { parameters: { path: infer P } } ? P : never;

/** Paths with a GET / POST operation answering 200 with JSON. */
export type GetPath = { [P in keyof paths]: paths[P] extends { get: { responses: { 200: unknown } } } ? P : never }[keyof paths];
export type PostPath = { [P in keyof paths]: paths[P] extends { post: { responses: { 200: unknown } } } ? P : never }[keyof paths];
type GetOp<P extends GetPath> = NonNullable<paths[P]["get"]>;
type PostOp<P extends PostPath> = NonNullable<paths[P]["post"]>;

/** Path parameters of an operation: required when it has any. */
type Args<Op> = [PathParams<Op>] extends [never] | [undefined] ? [params?: undefined] : [params: PathParams<Op>];

/** An RFC 9457 problem answer (or a network failure: status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly field?: string,
  ) {
    super(`${title}: ${detail}`);
  }
}

/** `/api/v1/syncs/{name}` with `{name: "s1"}` → `/api/v1/syncs/s1` (each value URL-encoded). */
export function fillPath(template: string, params?: Record<string, unknown>): string {
  return template.replace(/\{(\w+)\}/g, (_, key: string) => {
    const value = params?.[key];
    if (value === undefined || value === null) throw new Error(`path parameter ${key} missing for ${template}`);
    return encodeURIComponent(String(value));
  });
}

export class Api {
  constructor(
    private readonly token: string,
    /** Called on a 401 (the token expired or was revoked): the app logs out. */
    private readonly onUnauthorized: () => void = () => {},
  ) {}

  get<P extends GetPath>(path: P, ...args: Args<GetOp<P>>): Promise<Ok<GetOp<P>>> {
    return this.call("GET", fillPath(path, args[0] as Record<string, unknown> | undefined));
  }

  post<P extends PostPath>(path: P, ...args: Args<PostOp<P>>): Promise<Ok<PostOp<P>>> {
    return this.call("POST", fillPath(path, args[0] as Record<string, unknown> | undefined));
  }

  headers(): Record<string, string> {
    return { Authorization: `Bearer ${this.token}`, Accept: "application/json" };
  }

  private async call<T>(method: string, url: string, body?: unknown): Promise<T> {
    let resp: Response;
    try {
      resp = await fetch(url, {
        method,
        headers: body === undefined ? this.headers() : { ...this.headers(), "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "Network error", "the fleetsync API cannot be reached");
    }
    if (resp.ok) return (await resp.json()) as T;
    if (resp.status === 401) this.onUnauthorized();
    let problem: { title?: string; detail?: string; field?: string } = {};
    try {
      problem = await resp.json();
    } catch {
      // Not a problem document (e.g. a proxy's page): the status says enough.
    }
    throw new ApiError(resp.status, problem.title ?? resp.statusText, problem.detail ?? `HTTP ${resp.status}`, problem.field);
  }
}
