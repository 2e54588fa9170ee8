//! Finds the line a dotted key path (`route[2].match`) sits on, so validation errors can point
//! at the file. Serde does not keep positions once values are typed, so the text is parsed a
//! second time into toml's spanned document and the path is walked there.

use toml::de::{DeTable, DeValue};

use super::ConfigIssue;

/// Fills in the line of each issue whose key can be found in `text`.
pub(super) fn locate(text: &str, mut issues: Vec<ConfigIssue>) -> Vec<ConfigIssue> {
    let Ok(doc) = DeTable::parse(text) else {
        return issues;
    };
    for issue in &mut issues {
        issue.line = offset_of(doc.get_ref(), &issue.key).map(|o| line_of(text, o));
    }
    issues
}

/// The dotted key path that `offset` falls under, e.g. `upstream.connect_timeout` for an
/// offset inside that value. Serde errors carry only a span; this names the key.
///
/// A table's span may cover only its `[header]`, so containment cannot be used; instead each
/// level picks the entry that starts last at or before the offset, which in a TOML document is
/// the key (or table, or array element) the offset belongs to.
pub(super) fn path_at(text: &str, offset: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path: Vec<String> = Vec::new();
    let mut table = doc.get_ref();
    while let Some((key, value)) = table
        .iter()
        .filter(|(k, _)| k.span().start <= offset)
        .max_by_key(|(k, _)| k.span().start)
    {
        let mut segment = key.get_ref().to_string();
        let mut value = value.get_ref();
        if let DeValue::Array(items) = value {
            let item = items
                .iter()
                .enumerate()
                .rfind(|(_, v)| v.span().start <= offset);
            if let Some((i, item)) = item {
                segment.push_str(&format!("[{i}]"));
                value = item.get_ref();
            }
        }
        path.push(segment);
        match value {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    (!path.is_empty()).then(|| path.join("."))
}

/// 1-based line number of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Byte offset of the deepest part of `path` present in the document: the key itself when it
/// is written, otherwise its table, so a missing key still points somewhere useful.
fn offset_of(root: &DeTable<'_>, path: &str) -> Option<usize> {
    let mut table = root;
    let mut found = None;
    for segment in path.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
            return found;
        };
        found = Some(key.span().start);
        let mut value = value;
        if let Some(i) = index {
            let Some(item) = value.get_ref().as_array().and_then(|a| a.get(i)) else {
                return found;
            };
            found = Some(item.span().start);
            value = item;
        }
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[upstream]\nurl = \"x\"\n\n[[route]]\nname = \"a\"\n\n[[route]]\nname = \"b\"\nmatch = \"GET /\"\n";

    #[test]
    fn finds_nested_and_indexed_keys() {
        let doc = DeTable::parse(DOC).unwrap();
        let line = |p| offset_of(doc.get_ref(), p).map(|o| line_of(DOC, o));
        assert_eq!(line("upstream.url"), Some(2));
        assert_eq!(line("route[1].match"), Some(9));
        assert_eq!(line("route[0].name"), Some(5));
    }

    #[test]
    fn names_the_key_an_offset_falls_under() {
        let at = |needle: &str| path_at(DOC, DOC.find(needle).unwrap());
        assert_eq!(at("\"x\"").as_deref(), Some("upstream.url"));
        assert_eq!(at("\"GET /\"").as_deref(), Some("route[1].match"));
        assert_eq!(at("\"a\"").as_deref(), Some("route[0].name"));
    }

    #[test]
    fn a_missing_key_points_at_its_table() {
        let doc = DeTable::parse(DOC).unwrap();
        let at = offset_of(doc.get_ref(), "route[0].match").map(|o| line_of(DOC, o));
        // The array-of-tables entry `route[0]` starts on line 4 or 5 depending on how the
        // parser spans a table header; either points the reader at the right block.
        assert!(matches!(at, Some(4) | Some(5)), "{at:?}");
    }
}
