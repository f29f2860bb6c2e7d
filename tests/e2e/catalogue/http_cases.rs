//! The catalogue's HTTP entries: the metrics listener and the API of a running `fleetsync run`
//! (unknown routes, wrong methods, missing or weak tokens, malformed bodies), secrets never
//! shown.

use super::Category::Http;
use super::Run::{Api, Cli, Http as Get};
use super::Tok::{Bogus, Missing, Owner, Viewer};
use super::{case, Case};

pub fn http_cases() -> Vec<Case> {
    vec![
        Case {
            expect: 404,
            ..case(
                "GET of an unknown route",
                Http,
                Get("GET", "/no/such/route", ""),
            )
        },
        Case {
            expect: 404,
            ..case(
                "the old open control route is gone",
                Http,
                Get("POST", "/api/syncs/s1/pause", ""),
            )
        },
        Case {
            expect: 404,
            mentions: &[&["no sync named"], &["ghost"]],
            ..case(
                "POST pause of an unknown sync",
                Http,
                Api(Owner, "POST", "/api/v1/syncs/ghost/pause", ""),
            )
        },
        Case {
            expect: 404,
            mentions: &[&["no sync named"]],
            ..case(
                "POST cancel of an unknown sync",
                Http,
                Api(Owner, "POST", "/api/v1/syncs/ghost/cancel", ""),
            )
        },
        Case {
            expect: 404,
            mentions: &[&["no route"]],
            ..case(
                "POST of an unknown action",
                Http,
                Api(Owner, "POST", "/api/v1/syncs/s1/explode", ""),
            )
        },
        Case {
            expect: 405,
            ..case(
                "GET of a POST-only route",
                Http,
                Api(Owner, "GET", "/api/v1/syncs/s1/pause", ""),
            )
        },
        Case {
            expect: 401,
            mentions: &[&["bearer"]],
            ..case(
                "API call without a token",
                Http,
                Api(Missing, "POST", "/api/v1/syncs/s1/pause", ""),
            )
        },
        Case {
            expect: 401,
            mentions: &[&["not valid"]],
            ..case(
                "API call with a token never issued",
                Http,
                Api(Bogus, "POST", "/api/v1/syncs/s1/cancel", ""),
            )
        },
        Case {
            expect: 401,
            mentions: &[&["bearer"]],
            ..case(
                "API unknown route without a token",
                Http,
                Api(Missing, "GET", "/api/v1/no-such-route", ""),
            )
        },
        Case {
            expect: 401,
            mentions: &[&["bearer"]],
            ..case(
                "API wrong method without a token",
                Http,
                Api(Missing, "GET", "/api/v1/syncs/s1/pause", ""),
            )
        },
        Case {
            expect: 403,
            mentions: &[&["viewer"], &["syncs:control"]],
            ..case(
                "pause with a viewer token",
                Http,
                Api(Viewer, "POST", "/api/v1/syncs/s1/pause", ""),
            )
        },
        Case {
            expect: 200,
            mentions: &[&["\"dry_run\":true"], &["paused"]],
            ..case(
                "dry-run pause changes nothing",
                Http,
                Api(Owner, "POST", "/api/v1/syncs/s1/pause?dry_run=true", ""),
            )
        },
        Case {
            expect: 400,
            mentions: &[&["dry_run"]],
            ..case(
                "dry_run that is not a boolean",
                Http,
                Api(Owner, "POST", "/api/v1/syncs/s1/pause?dry_run=yes", ""),
            )
        },
        Case {
            expect: 400,
            mentions: &[&["JSON"]],
            ..case(
                "bulk pause with malformed JSON",
                Http,
                Api(
                    Owner,
                    "POST",
                    "/api/v1/bulk/syncs/pause",
                    "{\"syncs\": [\"s1\"",
                ),
            )
        },
        Case {
            expect: 422,
            mentions: &[&["force"]],
            ..case(
                "bulk pause with an unknown field",
                Http,
                Api(
                    Owner,
                    "POST",
                    "/api/v1/bulk/syncs/pause",
                    "{\"syncs\": [\"s1\"], \"force\": true}",
                ),
            )
        },
        Case {
            expect: 422,
            mentions: &[&["syncs"]],
            ..case(
                "bulk pause with a wrong type",
                Http,
                Api(
                    Owner,
                    "POST",
                    "/api/v1/bulk/syncs/pause",
                    "{\"syncs\": \"s1\"}",
                ),
            )
        },
        Case {
            expect: 404,
            mentions: &[&["ghost"]],
            ..case(
                "bulk pause naming an unknown sync changes nothing",
                Http,
                Api(
                    Owner,
                    "POST",
                    "/api/v1/bulk/syncs/pause",
                    "{\"syncs\": [\"s1\", \"ghost\"]}",
                ),
            )
        },
        Case {
            expect: 400,
            mentions: &[&["limit"]],
            ..case(
                "audit with a limit out of range",
                Http,
                Api(Owner, "GET", "/api/v1/audit?limit=100000", ""),
            )
        },
        Case {
            expect: 405,
            ..case(
                "POST to /metrics",
                Http,
                Get("POST", "/metrics", "{\"reset\": true}"),
            )
        },
        Case {
            expect: 200,
            mentions: &[&["fleetsync_"]],
            ..case(
                "metrics never show the password",
                Http,
                Get("GET", "/metrics", ""),
            )
        },
        Case {
            expect: 200,
            mentions: &[&["streaming"]],
            ..case(
                "sync status never shows the password",
                Http,
                Api(Owner, "GET", "/api/v1/syncs", ""),
            )
        },
        Case {
            expect: 200,
            mentions: &[&["\"password\":\"***\""]],
            ..case(
                "server list never shows the password",
                Http,
                Api(Owner, "GET", "/api/v1/servers", ""),
            )
        },
        Case {
            expect: 200,
            mentions: &[&["\"status\":\"ok\""]],
            ..case(
                "health never shows the password",
                Http,
                Get("GET", "/health", ""),
            )
        },
        Case {
            mentions: &[&["ghost"]],
            ..case(
                "sync pause of an unknown sync (CLI)",
                Http,
                Cli(&["sync", "pause", "--config", "{http_config}", "ghost"]),
            )
        },
    ]
}
