//! One change of the store in memory ([`Defs::change_store`]), passwords sealed, and the
//! file store written.

use super::*;

impl Defs {
    /// Applies `change` to `store` (in memory). Returns (action, kind, name).
    pub(super) fn change_store(
        &self,
        store: &mut StoreFile,
        change: Change,
    ) -> Result<(&'static str, &'static str, String), DefsError> {
        match change {
            Change::PutServer {
                create,
                fields,
                password,
            } => {
                let name = name_of(&fields)?;
                if self.file.server(&name).is_some() {
                    return Err(self.conflict("server", &name, create));
                }
                let at = store
                    .servers
                    .iter()
                    .position(|s| field_str(&s.fields, "name") == Some(&name));
                let sealed = match (password, at) {
                    (Some(pw), _) => Some(self.seal(&name, &pw)?),
                    (None, Some(i)) if !create => store.servers[i].sealed_password.clone(),
                    (None, _) => None,
                };
                let record = StoredServer {
                    fields,
                    sealed_password: sealed,
                };
                match (create, at) {
                    (true, Some(_)) => Err(DefsError::Exists {
                        kind: "server",
                        name,
                    }),
                    (true, None) => {
                        store.servers.push(record);
                        Ok(("create", "server", name))
                    }
                    (false, Some(i)) => {
                        store.servers[i] = record;
                        Ok(("update", "server", name))
                    }
                    (false, None) => Err(DefsError::NotFound {
                        kind: "server",
                        name,
                    }),
                }
            }
            Change::DeleteServer(name) => {
                if self.file.server(&name).is_some() {
                    return Err(self.conflict("server", &name, false));
                }
                let at = store
                    .servers
                    .iter()
                    .position(|s| field_str(&s.fields, "name") == Some(&name))
                    .ok_or_else(|| DefsError::NotFound {
                        kind: "server",
                        name: name.clone(),
                    })?;
                let effective = self.effective();
                if let Some(user) = effective
                    .syncs
                    .iter()
                    .find(|s| s.source == name || s.targets.contains(&name))
                {
                    return Err(DefsError::InUse {
                        kind: "server",
                        name,
                        sync: format!(
                            "sync {:?}",
                            user.group.clone().unwrap_or_else(|| user.name.clone())
                        ),
                    });
                }
                if let Some(s) = store
                    .schedules
                    .iter()
                    .find(|s| s.target == name && s.kind != ScheduleKind::Sync)
                {
                    return Err(DefsError::InUse {
                        kind: "server",
                        name,
                        sync: format!("schedule {:?}", s.name),
                    });
                }
                store.servers.remove(at);
                Ok(("delete", "server", name))
            }
            Change::PutSync { create, fields } => {
                let name = name_of(&fields)?;
                if self
                    .file
                    .syncs
                    .iter()
                    .any(|s| s.name == name || s.group.as_deref() == Some(&name))
                {
                    return Err(self.conflict("sync", &name, create));
                }
                let at = store
                    .syncs
                    .iter()
                    .position(|s| field_str(s, "name") == Some(&name));
                match (create, at) {
                    (true, Some(_)) => Err(DefsError::Exists { kind: "sync", name }),
                    (true, None) => {
                        store.syncs.push(fields);
                        Ok(("create", "sync", name))
                    }
                    (false, Some(i)) => {
                        store.syncs[i] = fields;
                        Ok(("update", "sync", name))
                    }
                    (false, None) => Err(DefsError::NotFound { kind: "sync", name }),
                }
            }
            Change::PutSchedule { create, schedule } => {
                let name = schedule.name.clone();
                let at = store.schedules.iter().position(|s| s.name == name);
                match (create, at) {
                    (true, Some(_)) => Err(DefsError::Exists {
                        kind: "schedule",
                        name,
                    }),
                    (true, None) => {
                        store.schedules.push(schedule);
                        Ok(("create", "schedule", name))
                    }
                    (false, Some(i)) => {
                        store.schedules[i] = schedule;
                        Ok(("update", "schedule", name))
                    }
                    (false, None) => Err(DefsError::NotFound {
                        kind: "schedule",
                        name,
                    }),
                }
            }
            Change::DeleteSchedule(name) => {
                let at = store
                    .schedules
                    .iter()
                    .position(|s| s.name == name)
                    .ok_or_else(|| DefsError::NotFound {
                        kind: "schedule",
                        name: name.clone(),
                    })?;
                store.schedules.remove(at);
                Ok(("delete", "schedule", name))
            }
            Change::DeleteSync(name) => {
                if self.sync_origin(&name) == Origin::File {
                    return Err(self.conflict("sync", &name, false));
                }
                let at = store
                    .syncs
                    .iter()
                    .position(|s| field_str(s, "name") == Some(&name))
                    .ok_or_else(|| DefsError::NotFound {
                        kind: "sync",
                        name: name.clone(),
                    })?;
                if let Some(s) = store
                    .schedules
                    .iter()
                    .find(|s| s.target == name && s.kind == ScheduleKind::Sync)
                {
                    return Err(DefsError::InUse {
                        kind: "sync",
                        name,
                        sync: format!("schedule {:?}", s.name),
                    });
                }
                store.syncs.remove(at);
                Ok(("delete", "sync", name))
            }
        }
    }

    /// A create of a name the file uses collides; any other change of it is read-only.
    pub(super) fn conflict(&self, kind: &'static str, name: &str, create: bool) -> DefsError {
        let name = name.to_string();
        if create {
            DefsError::Exists { kind, name }
        } else {
            DefsError::ReadOnly { kind, name }
        }
    }

    pub(super) fn seal(&self, server: &str, password: &str) -> Result<String, DefsError> {
        let key = self.key.as_ref().ok_or_else(|| {
            DefsError::invalid(
                "password",
                "a server with a password needs [api] secret_key_file (passwords are stored encrypted; create a key with `fleetsync backup keygen --out FILE`)",
            )
        })?;
        let sealed = crypto::encrypt(key, password.as_bytes(), &aad(server))
            .map_err(|m| DefsError::invalid("password", m))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    pub(super) fn save(&self, store: &StoreFile) -> Result<(), DefsError> {
        use std::io::Write;
        let err = |path: &Path| {
            let place = path.display().to_string();
            move |e: std::io::Error| DefsError::Store {
                place,
                message: e.to_string(),
            }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        owner_only::private_dir(dir).map_err(err(dir))?;
        let tmp = self.path.with_extension("json.tmp");
        let text = store_text(store, &self.path.display().to_string())?;
        {
            let mut f = owner_only::create(&tmp).map_err(err(&tmp))?;
            f.write_all(text.as_bytes()).map_err(err(&tmp))?;
            f.sync_all().map_err(err(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(err(&self.path))?;
        // The rename itself is durable once the directory is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
