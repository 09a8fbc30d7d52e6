//! Job entries (`job` field of a stream entry, JSON).

use serde_json::{Map, Value};

/// A job as enqueued by the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    /// `owner/name` on Gitea, or a full URL (http, https, ssh, git, file).
    pub repo: String,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub status: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration: Option<f64>,
    pub agent_id: Option<String>,
    pub exit_code: Option<i64>,
}

/// Why an entry is not a usable job; `id` is set when the job id could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidJob {
    pub id: Option<String>,
    pub reason: String,
}

const URL_SCHEMES: &[&str] = &["http", "https", "ssh", "git", "file"];

/// A job id must be usable as a directory name and in Redis keys.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && !id.starts_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

fn valid_ref(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && !r.starts_with('-')
        && !r.contains("..")
        && !r.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn valid_name_part(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('.')
        && !p.starts_with('-')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `Some(scheme)` when `repo` is a full URL.
fn url_scheme(repo: &str) -> Option<&str> {
    repo.split_once("://").map(|(s, _)| s)
}

fn validate_repo(repo: &str) -> Result<(), String> {
    if repo.starts_with('-') || repo.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid repo {repo:?}"));
    }
    match url_scheme(repo) {
        Some(s) if URL_SCHEMES.contains(&s.to_ascii_lowercase().as_str()) => Ok(()),
        Some(s) => Err(format!("unsupported URL scheme {s:?} in repo")),
        None => {
            let name = repo.strip_suffix(".git").unwrap_or(repo);
            match name.split_once('/') {
                Some((o, n)) if valid_name_part(o) && valid_name_part(n) => Ok(()),
                _ => Err(format!(
                    "invalid repo {repo:?} (expected owner/name or a URL)"
                )),
            }
        }
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(other) => Err(format!("field `{key}` must be a string, got {other}")),
    }
}

/// Parses and validates the JSON of a job entry.
pub fn parse_job(raw: &str) -> Result<Job, InvalidJob> {
    let v: Value = serde_json::from_str(raw).map_err(|e| InvalidJob {
        id: None,
        reason: format!("not valid JSON: {e}"),
    })?;
    let obj = v.as_object().ok_or_else(|| InvalidJob {
        id: None,
        reason: "not a JSON object".into(),
    })?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(InvalidJob {
                id: None,
                reason: "missing field `id`".into(),
            })
        }
    };
    if !valid_id(&id) {
        return Err(InvalidJob {
            id: None,
            reason: format!("invalid id {id:?}"),
        });
    }
    let fail = |reason: String| InvalidJob {
        id: Some(id.clone()),
        reason,
    };
    let repo = opt_str(obj, "repo")
        .map_err(fail)?
        .ok_or_else(|| fail("missing field `repo`".into()))?;
    validate_repo(&repo).map_err(fail)?;
    let branch = opt_str(obj, "branch").map_err(fail)?;
    let commit = opt_str(obj, "commit").map_err(fail)?;
    for (what, r) in [("branch", &branch), ("commit", &commit)] {
        if let Some(r) = r {
            if !valid_ref(r) {
                return Err(fail(format!("invalid {what} {r:?}")));
            }
        }
    }
    // informational fields: tolerated when missing or of another type
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Job {
        id: id.clone(),
        repo,
        branch,
        commit,
        status: text("status"),
        started_at: text("started_at"),
        finished_at: text("finished_at"),
        duration: obj.get("duration").and_then(Value::as_f64),
        agent_id: text("agent_id"),
        exit_code: obj.get("exit_code").and_then(Value::as_i64),
    })
}

/// `host[:port]` of a URL (userinfo removed), lowercase.
fn authority(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let auth = rest.split(['/', '?', '#']).next().unwrap_or("");
    let auth = auth.rsplit_once('@').map(|(_, h)| h).unwrap_or(auth);
    Some(auth.to_ascii_lowercase())
}

fn gitea_base(gitea_host: &str) -> String {
    let h = gitea_host.trim_end_matches('/');
    if h.contains("://") {
        h.to_string()
    } else {
        format!("http://{h}")
    }
}

impl Job {
    /// True when `repo` is a full URL rather than `owner/name`.
    pub fn is_url(&self) -> bool {
        url_scheme(&self.repo).is_some()
    }

    /// The URL to clone.
    pub fn clone_url(&self, gitea_host: &str) -> String {
        if self.is_url() {
            self.repo.clone()
        } else {
            let name = self.repo.strip_suffix(".git").unwrap_or(&self.repo);
            format!("{}/{name}.git", gitea_base(gitea_host))
        }
    }
}

/// Whether the Gitea token may be sent to `url`: only over http(s) and only
/// to the Gitea host itself (never to a third-party URL given in a job).
pub fn token_applies(url: &str, gitea_host: &str) -> bool {
    let scheme = url_scheme(url).map(str::to_ascii_lowercase);
    if !matches!(scheme.as_deref(), Some("http") | Some("https")) {
        return false;
    }
    authority(url) == authority(&gitea_base(gitea_host))
}

/// The URL with any userinfo replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (auth, tail) = rest.split_at(end);
    match auth.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_job() {
        let j = parse_job(
            r#"{"id":"job-1","repo":"raibid/demo","branch":"main","commit":"0123abcd",
                "status":"Pending","started_at":"2025-01-01T00:00:00Z","finished_at":null,
                "duration":1.5,"agent_id":null,"exit_code":null,"extra":[1]}"#,
        )
        .unwrap();
        assert_eq!(j.id, "job-1");
        assert_eq!(j.repo, "raibid/demo");
        assert_eq!(j.branch.as_deref(), Some("main"));
        assert_eq!(j.commit.as_deref(), Some("0123abcd"));
        assert_eq!(j.status.as_deref(), Some("Pending"));
        assert_eq!(j.started_at.as_deref(), Some("2025-01-01T00:00:00Z"));
        assert_eq!(j.duration, Some(1.5));
        assert_eq!(j.exit_code, None);
        assert_eq!(
            j.clone_url("gitea.raibid-gitea.svc.cluster.local:3000"),
            "http://gitea.raibid-gitea.svc.cluster.local:3000/raibid/demo.git"
        );
    }

    #[test]
    fn missing_optional_fields() {
        let j =
            parse_job(r#"{"id":"a","repo":"https://example.com/x/y.git","commit":""}"#).unwrap();
        assert_eq!(j.branch, None);
        assert_eq!(j.commit, None);
        assert_eq!(j.started_at, None);
        assert!(j.is_url());
        assert_eq!(j.clone_url("ignored"), "https://example.com/x/y.git");
        let j = parse_job(r#"{"id":42,"repo":"o/n.git","started_at":17}"#).unwrap();
        assert_eq!(j.id, "42");
        assert_eq!(j.started_at, None);
        assert_eq!(
            j.clone_url("https://git.example/"),
            "https://git.example/o/n.git"
        );
    }

    #[test]
    fn bad_json() {
        let e = parse_job("{not json").unwrap_err();
        assert_eq!(e.id, None);
        assert!(e.reason.starts_with("not valid JSON"), "{}", e.reason);
        assert_eq!(parse_job("[1]").unwrap_err().id, None);
        assert_eq!(parse_job(r#"{"repo":"a/b"}"#).unwrap_err().id, None);
        let e = parse_job(r#"{"id":"j9","branch":"main"}"#).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("j9"));
        assert!(e.reason.contains("repo"));
        let e = parse_job(r#"{"id":"j9","repo":"a/b","branch":7}"#).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("j9"));
    }

    #[test]
    fn rejects_dangerous_values() {
        assert_eq!(
            parse_job(r#"{"id":"../x","repo":"a/b"}"#).unwrap_err().id,
            None
        );
        assert_eq!(
            parse_job(r#"{"id":"x/y","repo":"a/b"}"#).unwrap_err().id,
            None
        );
        for bad in [
            r#"{"id":"j","repo":"--upload-pack=x"}"#,
            r#"{"id":"j","repo":"a/../b"}"#,
            r#"{"id":"j","repo":"ext::sh -c x"}"#,
            r#"{"id":"j","repo":"a/b","branch":"--force"}"#,
            r#"{"id":"j","repo":"a/b","commit":"a b"}"#,
            r#"{"id":"j","repo":"ftp://h/x"}"#,
        ] {
            let e = parse_job(bad).unwrap_err();
            assert_eq!(e.id.as_deref(), Some("j"), "{bad}");
        }
        assert!(parse_job(r#"{"id":"j","repo":"file:///tmp/x/crate.git"}"#).is_ok());
    }

    #[test]
    fn token_scope_and_redaction() {
        let g = "gitea.svc:3000";
        assert!(token_applies("http://gitea.svc:3000/a/b.git", g));
        assert!(token_applies("http://u@GITEA.svc:3000/a/b.git", g));
        assert!(!token_applies("https://github.com/a/b.git", g));
        assert!(!token_applies("file:///tmp/a.git", g));
        assert!(token_applies(
            "https://git.example/a/b.git",
            "https://git.example/"
        ));
        assert_eq!(redact_url("https://u:p@h/x?y@z"), "https://***@h/x?y@z");
        assert_eq!(redact_url("https://h/x"), "https://h/x");
    }
}
