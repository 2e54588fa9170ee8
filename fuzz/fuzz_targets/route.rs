//! Route patterns: parsing never panics, and matching obeys the documented rules.
#![no_main]

use arbitrary::Arbitrary;
use http::Method;
use libfuzzer_sys::fuzz_target;
use payguard::route::RoutePattern;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    pattern: &'a str,
    method: &'a str,
    path: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    let Ok(method) = Method::from_bytes(input.method.as_bytes()) else {
        return;
    };
    let segments: Vec<&str> = input.path.split('/').filter(|s| !s.is_empty()).collect();

    if let Ok(pattern) = RoutePattern::parse(input.pattern) {
        let matched = pattern.matches(&method, input.path);
        // Empty segments never count, so doubling every slash changes nothing.
        let doubled = input.path.replace('/', "//");
        assert_eq!(matched, pattern.matches(&method, &doubled), "{doubled:?}");
    }

    // `* /*` covers every path with at least one segment, whatever the method.
    let any = RoutePattern::parse("* /*").expect("the catch-all parses");
    assert_eq!(any.matches(&method, input.path), !segments.is_empty());

    // A pattern spelled out from the path's own segments matches that path, and only with
    // its method.
    let plain = |s: &&str| !s.contains('*') && !s.chars().any(char::is_whitespace);
    if segments.iter().all(plain) && method.as_str().bytes().all(|b| b.is_ascii_uppercase()) {
        let literal = format!("{} /{}", method.as_str(), segments.join("/"));
        let pattern = RoutePattern::parse(&literal).expect("a literal pattern parses");
        assert!(pattern.matches(&method, input.path), "{literal:?}");
        if method != Method::PATCH {
            assert!(!pattern.matches(&Method::PATCH, input.path));
        }
    }
});
