//! Environment overrides: `FLEETSYNC_STATE_DIR`, `FLEETSYNC_METRICS_LISTEN`,
//! `FLEETSYNC_SERVER_<NAME>_URL`, `FLEETSYNC_SERVER_<NAME>_PASSWORD` (NAME upper-cased, `-`
//! as `_`), `FLEETSYNC_BUS_BROKERS`, `FLEETSYNC_BUS_SASL_PASSWORD`. A password from the
//! environment wins over the URL's (or `[bus.kafka] sasl.password`), `password_env` and
//! `password_file`.

use std::path::PathBuf;

use crate::{Config, ConfigError};

const PREFIX: &str = "FLEETSYNC_";

impl Config {
    pub fn apply_env(
        &mut self,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let mut passwords = Vec::new();
        for (key, value) in vars {
            let Some(rest) = key.strip_prefix(PREFIX) else {
                continue;
            };
            match rest {
                "STATE_DIR" => self.state_dir = PathBuf::from(value),
                "METRICS_LISTEN" => self.metrics.listen = value,
                "BUS_BROKERS" => self.bus.brokers = Some(value),
                "BUS_SASL_PASSWORD" => self.bus.sasl_password = Some(value),
                _ => {
                    let Some(server_key) = rest.strip_prefix("SERVER_") else {
                        continue;
                    };
                    let server = self.servers.iter_mut().find(|s| {
                        let norm = s.name.to_ascii_uppercase().replace('-', "_");
                        server_key
                            .strip_prefix(norm.as_str())
                            .is_some_and(|r| r == "_URL" || r == "_PASSWORD")
                    });
                    let Some(server) = server else { continue };
                    if server_key.ends_with("_URL") {
                        server.url = value;
                    } else {
                        passwords.push((server.name.clone(), value));
                    }
                }
            }
        }
        for (name, pw) in passwords {
            if let Some(s) = self.servers.iter_mut().find(|s| s.name == name) {
                s.password_env = None;
                s.password_file = None;
                s.password = Some(pw);
            }
        }
        Ok(())
    }
}
