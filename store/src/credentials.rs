//! S3 credentials: `[backup] s3_credentials_file`, else the environment.

use std::path::Path;

/// An access key pair (and session token). `Debug` never shows the values.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

impl Credentials {
    /// From `file` when given (it must hold both keys), else from `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`. Errors name the file or variable, never
    /// a value.
    pub fn resolve(file: Option<&Path>) -> Result<Credentials, String> {
        match file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("backup.s3_credentials_file {}: {e}", f.display()))?;
                Credentials::parse(&text)
                    .map_err(|e| format!("backup.s3_credentials_file {}: {e}", f.display()))
            }
            None => {
                let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) => Ok(Credentials {
                        access_key_id: id,
                        secret_access_key: secret,
                        session_token: var("AWS_SESSION_TOKEN"),
                    }),
                    _ => Err("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or [backup] s3_credentials_file".into()),
                }
            }
        }
    }

    /// AWS's shared-credentials format: `key = value` lines, `#`/`;` comments, sections; the
    /// keys of `[default]` (or of lines before any section) are used.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let (mut id, mut secret, mut token) = (None, None, None);
        let mut in_default = true;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                in_default = section.trim() == "default";
                continue;
            }
            if !in_default {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err("a line is neither a [section] nor key = value".into());
            };
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
        match (id, secret) {
            (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Ok(Credentials {
                access_key_id: a,
                secret_access_key: s,
                session_token: token.filter(|t| !t.is_empty()),
            }),
            _ => Err("needs aws_access_key_id and aws_secret_access_key (in [default] or before any section)".into()),
        }
    }

    /// The values to scrub from any text shown to people.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut v = vec![self.access_key_id.clone(), self.secret_access_key.clone()];
        v.extend(self.session_token.clone());
        v.retain(|s| s.len() >= 4);
        v
    }
}
