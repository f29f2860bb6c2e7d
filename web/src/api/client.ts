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
type QueryParams<Op> = Op extends { parameters: { query?: infer Q } } ? Q : never;
type Body<Op> = Op extends { requestBody: { content: { "application/json": infer B } } }
  ? B
  : Op extends { requestBody?: { content: { "application/json": infer B } } }
    ? B
    : undefined;
/** The JSON of the first 2xx answer (200, 201 or 202). */
type Answer<Op> = Op extends { responses: { 200: infer R } }
  ? JsonOf<R>
  : Op extends { responses: { 201: infer R } }
    ? JsonOf<R>
    : Op extends { responses: { 202: infer R } }
      ? JsonOf<R>
      : unknown;

/** Paths with a GET / POST operation answering 200 with JSON. */
export type GetPath = { [P in keyof paths]: paths[P] extends { get: { responses: { 200: unknown } } } ? P : never }[keyof paths];
export type PostPath = { [P in keyof paths]: paths[P] extends { post: { responses: { 200: unknown } } } ? P : never }[keyof paths];
type GetOp<P extends GetPath> = NonNullable<paths[P]["get"]>;
type PostOp<P extends PostPath> = NonNullable<paths[P]["post"]>;
/** Any path with a POST / PUT / DELETE operation (any answer). */
export type SendPath = { [P in keyof paths]: paths[P] extends { post: object } ? P : never }[keyof paths];
export type PutPath = { [P in keyof paths]: paths[P] extends { put: object } ? P : never }[keyof paths];
export type DeletePath = { [P in keyof paths]: paths[P] extends { delete: object } ? P : never }[keyof paths];
type SendOp<P extends SendPath> = NonNullable<paths[P]["post"]>;
type PutOp<P extends PutPath> = NonNullable<paths[P]["put"]>;
type DeleteOp<P extends DeletePath> = NonNullable<paths[P]["delete"]>;
/** Path and query parameters of a call, typed by the operation. */
export type CallOpts<Op> = {
  path?: PathParams<Op>;
  query?: QueryParams<Op> extends never ? undefined : QueryParams<Op>;
};

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

  /** POST with a JSON body typed by the operation (`send("/api/v1/jobs/health", {}, {server})`). */
  send<P extends SendPath>(path: P, opts: CallOpts<SendOp<P>>, body?: Body<SendOp<P>>): Promise<Answer<SendOp<P>>> {
    return this.call("POST", withQuery(fillPath(path, opts.path as Record<string, unknown>), opts.query), body);
  }

  put<P extends PutPath>(path: P, opts: CallOpts<PutOp<P>>, body: Body<PutOp<P>>): Promise<Answer<PutOp<P>>> {
    return this.call("PUT", withQuery(fillPath(path, opts.path as Record<string, unknown>), opts.query), body);
  }

  del<P extends DeletePath>(path: P, opts: CallOpts<DeleteOp<P>>): Promise<Answer<DeleteOp<P>>> {
    return this.call("DELETE", withQuery(fillPath(path, opts.path as Record<string, unknown>), opts.query));
  }

  /** GET with query parameters (filters): `query("/api/v1/audit", {}, {action: "pause_sync"})`. */
  query<P extends GetPath>(path: P, opts: CallOpts<GetOp<P>>): Promise<Ok<GetOp<P>>> {
    return this.call("GET", withQuery(fillPath(path, opts.path as Record<string, unknown>), opts.query));
  }

  /**
   * A raw authenticated request (downloads, uploads): the Response as it came, after the same
   * error handling as the JSON calls. Downloads go through a Blob (the token must stay out of URLs).
   */
  async raw(method: string, url: string, body?: BodyInit, contentType?: string): Promise<Response> {
    let resp: Response;
    try {
      resp = await fetch(url, {
        method,
        headers: contentType ? { ...this.headers(), "Content-Type": contentType } : this.headers(),
        body,
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "Network error", "the fleetsync API cannot be reached");
    }
    if (resp.ok) return resp;
    throw await this.problem(resp);
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
    } catch {
      throw new ApiError(0, "Network error", "the fleetsync API cannot be reached");
    }
    if (resp.ok) return (resp.status === 204 ? undefined : await resp.json()) as T;
    throw await this.problem(resp);
  }

  private async problem(resp: Response): Promise<ApiError> {
    if (resp.status === 401) this.onUnauthorized();
    let problem: { title?: string; detail?: string; field?: string } = {};
    try {
      problem = await resp.json();
    } catch {
      // Not a problem document (e.g. a proxy's page): the status says enough.
    }
    return new ApiError(resp.status, problem.title ?? resp.statusText, problem.detail ?? `HTTP ${resp.status}`, problem.field);
  }
}

/** A failed call in plain words: the API's problem `detail`, else the error's message. */
export function problemText(e: unknown): string {
  return e instanceof ApiError ? e.detail : e instanceof Error ? e.message : String(e);
}

/**
 * The job a job route started: the client types a job route's answer as its 200 (the
 * `?dry_run=true` plan), but without `dry_run` the route answers 202 with the job.
 */
export function asJob(answer: unknown): Schemas["JobDoc"] {
  return answer as Schemas["JobDoc"];
}

/** `url` with the defined query values appended (`?a=1&b=x`). */
export function withQuery(url: string, query?: object | null): string {
  if (!query) return url;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `${url}?${s}` : url;
}

/** Save a Response's body as a file in the browser (a download without the token in a URL). */
export async function saveAs(resp: Response, fallbackName: string): Promise<void> {
  const cd = resp.headers.get("Content-Disposition") ?? "";
  const name = /filename="?([^";]+)"?/.exec(cd)?.[1] ?? fallbackName;
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
