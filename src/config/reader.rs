//! Reads typed values out of a spanned TOML document, collecting every problem with its
//! position instead of stopping at the first, and expands `${VAR}` in string values.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Environment, Problem, files};
use crate::secret::Secret;

pub(super) type Span = Range<usize>;

/// A value with the place it was written.
#[derive(Clone, Debug)]
pub(super) struct At<T> {
    pub value: T,
    pub span: Span,
}

/// A TOML table being read, with the name used in messages (`[poll]`, `[[targets]]`).
#[derive(Clone, Copy)]
pub(super) struct Table<'a, 'i> {
    pub map: &'a DeTable<'i>,
    pub span: &'a Span,
    pub name: &'a str,
}

impl<'a, 'i> Table<'a, 'i> {
    pub fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.map
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The span of a key's name, for messages about the key itself.
    pub fn key_span(&self, key: &str) -> Span {
        self.map
            .keys()
            .find(|k| k.get_ref().as_ref() == key)
            .map_or_else(|| self.span.clone(), |k| k.span())
    }
}

/// Walks a parsed document and collects problems and warnings.
pub(super) struct Reader<'s> {
    source: &'s str,
    file: &'s Path,
    env: &'s dyn Environment,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

thread_local! {
    /// Values of this thread's config read that came wholly or partly from `${VAR}` or a
    /// `_file`: [`is_safe_to_show`] never shows them, whichever caller formats the message.
    static FROM_OUTSIDE: std::cell::RefCell<BTreeSet<String>> =
        const { std::cell::RefCell::new(BTreeSet::new()) };
}

/// Marks a value as coming from the environment or a file, so that no message quotes it.
pub(super) fn mark_from_outside(value: &str) {
    FROM_OUTSIDE.with(|set| set.borrow_mut().insert(value.to_owned()));
}

fn is_from_outside(value: &str) -> bool {
    FROM_OUTSIDE.with(|set| {
        let set = set.borrow();
        set.contains(value)
            || set
                .iter()
                .any(|v| !v.is_empty() && value.contains(v.as_str()))
    })
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        FROM_OUTSIDE.with(|set| set.borrow_mut().clear());
    }
}

impl<'s> Reader<'s> {
    pub fn new(source: &'s str, file: &'s Path, env: &'s dyn Environment) -> Self {
        FROM_OUTSIDE.with(|set| set.borrow_mut().clear());
        Self {
            source,
            file,
            env,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn problem(&self, span: &Span, message: String) -> Problem {
        let (line, column) = line_column(self.source, span.start);
        Problem {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
        }
    }

    /// The problems and warnings found, each in file order.
    pub fn finish(mut self) -> (Vec<Problem>, Vec<Problem>) {
        let (mut problems, mut warnings) = (
            std::mem::take(&mut self.problems),
            std::mem::take(&mut self.warnings),
        );
        problems.sort();
        problems.dedup();
        warnings.sort();
        (problems, warnings)
    }

    /// The 1-based line a span starts on.
    pub fn line_of(&self, span: &Span) -> usize {
        line_column(self.source, span.start).0
    }

    pub fn error(&mut self, span: &Span, message: impl Into<String>) {
        let problem = self.problem(span, message.into());
        self.problems.push(problem);
    }

    pub fn warn(&mut self, span: &Span, message: impl Into<String>) {
        let problem = self.problem(span, message.into());
        self.warnings.push(problem);
    }

    /// Reports every key of `table` that is not in `allowed`, suggesting the nearest one.
    pub fn check_keys(&mut self, table: Table<'_, '_>, allowed: &[&str]) {
        for key in table.map.keys() {
            let name = key.get_ref().as_ref();
            if allowed.contains(&name) {
                continue;
            }
            let mut message = format!("unknown key {} in {}", named(name), table.name);
            if let Some(near) = nearest(name, allowed) {
                message.push_str(&format!(" (did you mean `{near}`?)"));
            } else {
                message.push_str(&format!("; known keys: {}", allowed.join(", ")));
            }
            self.error(&key.span(), message);
        }
    }

    pub fn require(&mut self, table: Table<'_, '_>, key: &str) {
        if !table.has(key) {
            self.error(
                table.span,
                format!("{} is missing the key `{key}`", table.name),
            );
        }
    }

    /// A sub-table, or an error when the key holds something else.
    pub fn table<'a, 'i>(
        &mut self,
        parent: Table<'a, 'i>,
        key: &str,
    ) -> Option<(&'a DeTable<'i>, &'a Spanned<DeValue<'i>>)> {
        let value = parent.get(key)?;
        match value.get_ref() {
            DeValue::Table(map) => Some((map, value)),
            other => {
                self.error(
                    &value.span(),
                    format!("`{key}` must be a table, not {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A string value with `${VAR}` expanded.
    pub fn string(&mut self, table: Table<'_, '_>, key: &str) -> Option<At<String>> {
        let value = table.get(key)?;
        self.string_value(value, key)
    }

    pub fn string_value(&mut self, value: &Spanned<DeValue<'_>>, what: &str) -> Option<At<String>> {
        let span = value.span();
        match value.get_ref() {
            DeValue::String(text) => match expand_marked(text, self.env) {
                Ok((expanded, substituted)) => {
                    if substituted {
                        mark_from_outside(&expanded);
                    }
                    Some(At {
                        value: expanded,
                        span,
                    })
                }
                Err(message) => {
                    self.error(&span, format!("`{what}`: {message}"));
                    None
                }
            },
            other => {
                self.error(
                    &span,
                    format!("`{what}` must be a string, not {}", type_name(other)),
                );
                None
            }
        }
    }

    /// One string or an array of strings.
    pub fn strings(&mut self, table: Table<'_, '_>, key: &str) -> Option<At<Vec<At<String>>>> {
        let value = table.get(key)?;
        let span = value.span();
        let items = match value.get_ref() {
            DeValue::String(_) => vec![self.string_value(value, key)?],
            DeValue::Array(array) => {
                let mut items = Vec::new();
                let mut ok = true;
                for item in array.iter() {
                    match self.string_value(item, key) {
                        Some(s) => items.push(s),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                items
            }
            other => {
                self.error(
                    &span,
                    format!(
                        "`{key}` must be a string or an array of strings, not {}",
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        Some(At { value: items, span })
    }

    /// A table of strings (`labels`, `headers`): each name and value with its place.
    pub fn string_map(
        &mut self,
        table: Table<'_, '_>,
        key: &str,
    ) -> Option<Vec<(At<String>, At<String>)>> {
        let (map, _) = self.table(table, key)?;
        let mut entries = Vec::new();
        for (name, value) in map.iter() {
            let name = At {
                value: name.get_ref().to_string(),
                span: name.span(),
            };
            let what = match is_safe_to_show(&name.value) {
                true => format!("{key}.{}", name.value),
                false => format!("{key}.<a name not shown>"),
            };
            if let Some(value) = self.string_value(value, &what) {
                entries.push((name, value));
            }
        }
        Some(entries)
    }

    /// A humantime duration (`"30s"`, `"5m"`); see [`super::duration`].
    pub fn duration(&mut self, table: Table<'_, '_>, key: &str) -> Option<At<Duration>> {
        let value = table.get(key)?;
        if !matches!(value.get_ref(), DeValue::String(_)) {
            self.error(
                &value.span(),
                format!(
                    "`{key}` must be a duration string such as \"30s\" or \"5m\", not {}",
                    type_name(value.get_ref())
                ),
            );
            return None;
        }
        let text = self.string_value(value, key)?;
        match super::duration::parse(&text.value) {
            Ok(duration) => Some(At {
                value: duration,
                span: text.span,
            }),
            Err(problem) => {
                self.error(&text.span, format!("`{key}`: {problem}"));
                None
            }
        }
    }

    pub fn integer(&mut self, table: Table<'_, '_>, key: &str) -> Option<At<i64>> {
        let value = table.get(key)?;
        let span = value.span();
        match value.get_ref() {
            DeValue::Integer(int) => match i64::from_str_radix(int.as_str(), int.radix()) {
                Ok(n) => Some(At { value: n, span }),
                Err(_) => {
                    self.error(&span, format!("`{key}`: {int} is out of range"));
                    None
                }
            },
            other => {
                self.error(
                    &span,
                    format!("`{key}` must be an integer, not {}", type_name(other)),
                );
                None
            }
        }
    }

    /// An integer or a float.
    pub fn number(&mut self, table: Table<'_, '_>, key: &str) -> Option<At<f64>> {
        let value = table.get(key)?;
        let span = value.span();
        let parsed = match value.get_ref() {
            DeValue::Integer(int) => i64::from_str_radix(int.as_str(), int.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(float) => float.as_str().parse::<f64>().ok(),
            other => {
                self.error(
                    &span,
                    format!("`{key}` must be a number, not {}", type_name(other)),
                );
                return None;
            }
        };
        match parsed {
            Some(n) if n.is_finite() => Some(At { value: n, span }),
            _ => {
                self.error(&span, format!("`{key}` must be a finite number"));
                None
            }
        }
    }

    /// A secret given inline as `key` or read from the file named by `key_file`, never both.
    /// The file's trailing newline is dropped. Messages name the key and the path, never the
    /// value.
    pub fn secrets(
        &mut self,
        table: Table<'_, '_>,
        key: &str,
        base_dir: &Path,
    ) -> Option<At<Vec<At<Secret>>>> {
        let file_key = format!("{key}_file");
        match (table.has(key), table.has(&file_key)) {
            (true, true) => {
                self.error(
                    &table.key_span(&file_key),
                    format!("set `{key}` or `{file_key}`, not both"),
                );
                None
            }
            (true, false) => {
                let strings = self.strings(table, key)?;
                let secrets = strings
                    .value
                    .into_iter()
                    .map(|s| At {
                        value: Secret::new(s.value),
                        span: s.span,
                    })
                    .collect();
                Some(At {
                    value: secrets,
                    span: strings.span,
                })
            }
            (false, true) => {
                let paths = self.strings(table, &file_key)?;
                // Read every file, so that each unreadable one is reported in this run.
                let secrets: Vec<Option<At<Secret>>> = paths
                    .value
                    .iter()
                    .map(|path| self.read_secret_file(path, &file_key, base_dir))
                    .collect();
                Some(At {
                    value: secrets.into_iter().collect::<Option<Vec<_>>>()?,
                    span: paths.span,
                })
            }
            (false, false) => None,
        }
    }

    pub fn read_secret_file(
        &mut self,
        path: &At<String>,
        key: &str,
        base_dir: &Path,
    ) -> Option<At<Secret>> {
        let (resolved, content) =
            self.read_named_file(path, key, base_dir, files::SECRET_MAX_BYTES)?;
        let content = content.strip_suffix('\n').unwrap_or(&content);
        let content = content.strip_suffix('\r').unwrap_or(content);
        mark_from_outside(content);
        if content.is_empty() {
            self.error(
                &path.span,
                format!("`{key}`: {} is empty", resolved.display()),
            );
            return None;
        }
        Some(At {
            value: Secret::new(content),
            span: path.span.clone(),
        })
    }

    /// Reads the file a key names (relative to `base_dir`), a regular file of at most
    /// `limit` bytes; the problem names the key and the path, never the content.
    pub fn read_named_file(
        &mut self,
        path: &At<String>,
        key: &str,
        base_dir: &Path,
        limit: u64,
    ) -> Option<(PathBuf, String)> {
        let resolved = resolve(base_dir, &path.value);
        match self.env.read_file_limited(&resolved, limit) {
            Ok(content) => Some((resolved, content)),
            Err(err) => {
                self.error(
                    &path.span,
                    format!("`{key}`: cannot read {}: {err}", resolved.display()),
                );
                None
            }
        }
    }

    /// What is at a path the daemon will write, when it is not a regular file.
    pub fn non_regular_file(&self, path: &Path) -> Option<&'static str> {
        self.env.non_regular_file(path)
    }
}

/// The longest value a message quotes.
const SHOWN_MAX_CHARS: usize = 64;
/// A run of this many letters and digits looks like a token.
const TOKEN_RUN: usize = 20;
/// A value this long that mixes letters, digits and `-`, `_`, `/` or `+` looks like a token.
const TOKEN_MIXED: usize = 16;
/// How well-known tokens and keys begin (Slack, GitHub, AWS access keys, API keys).
const TOKEN_PREFIXES: &[&str] = &[
    "xox",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "github_pat_",
    "AKIA",
    "ASIA",
    "sk-",
    "glpat-",
];

/// Whether a value looks like a token or key: a known prefix, or 16 characters or more
/// mixing letters and digits with `-`, `_`, `/` or `+`.
fn looks_like_token(value: &str) -> bool {
    if TOKEN_PREFIXES.iter().any(|p| value.starts_with(p)) {
        return true;
    }
    value.chars().count() >= TOKEN_MIXED
        && value.chars().any(|c| c.is_ascii_alphabetic())
        && value.chars().any(|c| c.is_ascii_digit())
        && value.contains(['-', '_', '/', '+'])
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/+=.".contains(c))
}

/// Whether a value from the config may be quoted in a message: the one rule every message
/// follows. Only a short value with no control characters, no URL (`://`: a path or query
/// may be a credential, as a Slack webhook URL is), no user info (`@`) and no run of
/// [`TOKEN_RUN`] letters and digits, nothing token-like ([`looks_like_token`]) and nothing
/// that came from `${VAR}` or a `_file` is shown. Values of keys that hold secrets are
/// never passed here: their messages name the key only.
pub(super) fn is_safe_to_show(value: &str) -> bool {
    let mut run = 0usize;
    let mut longest = 0usize;
    for c in value.chars() {
        run = if c.is_ascii_alphanumeric() {
            run + 1
        } else {
            0
        };
        longest = longest.max(run);
    }
    value.chars().count() <= SHOWN_MAX_CHARS
        && !value.chars().any(char::is_control)
        && !value.contains("://")
        && !value.contains('@')
        && longest < TOKEN_RUN
        && !looks_like_token(value)
        && !is_from_outside(value)
}

/// A value for a message: quoted when [`is_safe_to_show`], else only its length.
pub(super) fn shown(value: &str) -> String {
    if is_safe_to_show(value) {
        format!("{value:?}")
    } else if is_from_outside(value) {
        format!(
            "(a value from the environment or a file, {} characters, not shown)",
            value.chars().count()
        )
    } else {
        format!(
            "(a value of {} characters, not shown as it may hold a secret)",
            value.chars().count()
        )
    }
}

/// A key or label name for a message: in backticks when [`is_safe_to_show`], else not shown.
pub(super) fn named(name: &str) -> String {
    if is_safe_to_show(name) {
        format!("`{name}`")
    } else {
        format!(
            "(a name of {} characters, not shown as it may hold a secret)",
            name.chars().count()
        )
    }
}

/// A path from the config, relative to the config file's directory unless absolute.
pub(super) fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

/// Expands `${VAR}` from the environment; `$$` is a literal `$`, and a `$` followed by
/// anything else stays as it is (bcrypt hashes start with `$2b$`). The message of an error
/// names the variable, never the text around it, which may be a secret.
#[cfg(test)]
pub(super) fn expand(text: &str, env: &dyn Environment) -> Result<String, String> {
    expand_marked(text, env).map(|(out, _)| out)
}

/// [`expand`], also telling whether any `${VAR}` was substituted.
fn expand_marked(text: &str, env: &dyn Environment) -> Result<(String, bool), String> {
    let mut substituted = false;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err("`${` without a closing `}` (write `$$` for a literal `$`)".into());
            };
            let name = &tail[..end];
            if !is_env_name(name) {
                // Not quoted: the text between the braces may be part of a secret.
                return Err(
                    "`${…}` does not hold a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
                        .into(),
                );
            }
            match env.var(name) {
                Some(value) => {
                    out.push_str(&value);
                    substituted = true;
                }
                None => return Err(format!("environment variable `{name}` is not set")),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, substituted))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

pub(super) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The allowed key closest to a misspelt one, when it is close enough to be a likely typo or
/// one is a prefix of the other (`listen_addr` for `listen`).
fn nearest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let key_lower = key.to_ascii_lowercase();
    let close = allowed
        .iter()
        .map(|candidate| (edit_distance(&key_lower, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min()
        .map(|(_, candidate)| candidate);
    close.or_else(|| {
        allowed.iter().copied().find(|candidate| {
            candidate.len() >= 3
                && key_lower.len() >= 3
                && (key_lower.starts_with(candidate) || candidate.starts_with(&key_lower))
        })
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Names that are listed once, for duplicate checks.
pub(super) fn first_duplicate<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = BTreeSet::new();
    names.into_iter().find(|name| !seen.insert(*name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Vars(BTreeMap<&'static str, &'static str>);

    impl Environment for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
        fn read_file(&self, path: &Path) -> std::io::Result<String> {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                path.display().to_string(),
            ))
        }
    }

    #[test]
    fn expansion() {
        let env = Vars(BTreeMap::from([("A", "alpha"), ("B_2", "")]));
        assert_eq!(expand("x${A}y${B_2}z", &env).unwrap(), "xalphayz");
        assert_eq!(expand("$${A}", &env).unwrap(), "${A}");
        assert_eq!(expand("cost: 5$ or $$5", &env).unwrap(), "cost: 5$ or $5");
        assert_eq!(expand("$2b$12$abc", &env).unwrap(), "$2b$12$abc");
        assert_eq!(expand("${A}$", &env).unwrap(), "alpha$");
        let missing = expand("token ${NOPE}", &env).unwrap_err();
        assert!(
            missing.contains("`NOPE`") && !missing.contains("token"),
            "{missing}"
        );
        assert!(expand("${A", &env).unwrap_err().contains("closing"));
        let invalid = expand("${1A secret}", &env).unwrap_err();
        assert!(
            invalid.contains("not hold a valid") && !invalid.contains("secret"),
            "{invalid}"
        );
    }

    #[test]
    fn positions_are_one_based_characters() {
        let source = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(source, 0), (1, 1));
        assert_eq!(line_column(source, 6), (2, 1));
        let x = source.find("\"x").unwrap();
        assert_eq!(line_column(source, x), (2, 6));
    }

    #[test]
    fn suggestions_for_typos() {
        let keys = ["interval", "discovery_interval", "timeout", "concurrency"];
        assert_eq!(nearest("intervall", &keys), Some("interval"));
        assert_eq!(nearest("Timeout", &keys), Some("timeout"));
        assert_eq!(nearest("concurency", &keys), Some("concurrency"));
        assert_eq!(nearest("banana", &keys), None);
        assert_eq!(nearest("concurrency_limit", &keys), Some("concurrency"));
    }
}
