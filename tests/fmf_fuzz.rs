//! Randomised robustness tests: the YAML/tree loader, the merge operators, the
//! `when` rule language, the filter language and conditions never panic, whatever
//! the input. Deterministic (fixed seeds) and bounded so they run in seconds.

use std::path::Path;

use atex::fmf::{self, Context, Map, Tree, Value, condition::Condition, filter, yaml};

/// xorshift64*: small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const YAML_TOKENS: &[&str] = &[
    "a",
    "b",
    "tag",
    "/x",
    "/",
    "//y",
    "tag+",
    "tag-",
    "tag~",
    "tag-~",
    "tag+<",
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\n    ",
    "\t",
    " ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "#",
    "&a ",
    "*a",
    "<<: ",
    "!!str ",
    "!!float ",
    "!!binary ",
    "!!set",
    "!x ",
    "'",
    "\"",
    "\\",
    "|",
    ">",
    "|-",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "~",
    "null",
    "true",
    "yes",
    "017",
    "0x1F",
    "1e3",
    ".inf",
    ".nan",
    "2024-01-02",
    "2024-01-02 10:20:30",
    "=",
    "?",
    "@",
    "`",
    "é",
    "🚀",
    "\u{0}",
    "\u{7f}",
    "inherit: false",
    "select: true",
    "adjust:",
    "when: ",
    "distro == fedora",
    "continue: false",
    "/a/b/",
    "'/a/b/'",
    "1",
    "-1",
    "12345678901234567890123456789012345678901234567890",
];

fn random_yaml(rng: &mut Rng) -> String {
    let n = 1 + rng.below(40);
    (0..n).map(|_| rng.pick(YAML_TOKENS)).collect()
}

const SEED_DOCS: &[&str] = &[
    "tags: [a, b]\ntext: hello\nnum: 10\nenv: {A: '1', B: '2'}\nreqs:\n  - {name: x}\n  - {name: y}\nsingle: {how: fmf}\n",
    "tags+: [c]\ntext+: ' world'\nnum+: 5\nenv+: {B: '3', C: '4'}\nreqs+: {type: rpm}\nsingle+:\n  - {filter: 'tag: x'}\n",
    "/:\n  inherit: false\n/one/two:\n  x: 1\nadjust:\n  - when: distro < rhel-9\n    enabled: false\n    continue: false\n",
    "base: &b\n  how: fmf\ncopy: *b\nmerged:\n  <<: *b\n  filter: 'tag: y'\ntext~: '/a/b/'\nlist-~: ['^x']\nenv-: [A]\n",
    "test: |\n  echo hi\n  exit 0\nsummary: >\n  folded\n  text\n",
];

fn mutate(rng: &mut Rng, doc: &str) -> String {
    let mut bytes: Vec<char> = doc.chars().collect();
    for _ in 0..1 + rng.below(6) {
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes.remove(i);
            }
            1 => {
                let i = rng.below(bytes.len() + 1);
                let tok: Vec<char> = rng.pick(YAML_TOKENS).chars().collect();
                for (k, c) in tok.into_iter().enumerate() {
                    bytes.insert(i + k, c);
                }
            }
            2 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                let j = rng.below(bytes.len());
                bytes.swap(i, j);
            }
            _ => {
                let i = rng.below(bytes.len() + 1);
                bytes.insert(i, (rng.below(128) as u8) as char);
            }
        }
    }
    bytes.into_iter().collect()
}

#[test]
fn yaml_loader_never_panics() {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let mut ok = 0;
    for i in 0..4000 {
        let text = if i % 2 == 0 {
            random_yaml(&mut rng)
        } else {
            let seed = SEED_DOCS[rng.below(SEED_DOCS.len())];
            mutate(&mut rng, seed)
        };
        if yaml::load(&text).is_ok() {
            ok += 1;
        }
    }
    // Both outcomes must actually occur for the test to mean anything.
    assert!(ok > 100 && ok < 4000, "ok = {ok}");
    // Deep nesting is rejected, not a stack overflow.
    let deep = "[".repeat(100_000);
    assert!(yaml::load(&deep).is_err());
    let deep_map = "a: {".repeat(50_000);
    assert!(yaml::load(&deep_map).is_err());
    // Alias bombs are bounded.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    assert!(yaml::load(&bomb).is_err());
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, content).expect("write");
}

#[test]
fn tree_pipeline_never_panics() {
    let mut rng = Rng(0xD1B54A32D192ED03);
    let ctx = Context::new()
        .with("distro", "fedora-40")
        .with("arch", "x86_64");
    let mut loaded = 0;
    for _ in 0..150 {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        write(r, ".fmf/version", b"1\n");
        let docs: Vec<String> = (0..3)
            .map(|_| {
                let seed = SEED_DOCS[rng.below(SEED_DOCS.len())];
                match rng.below(6) {
                    0 => random_yaml(&mut rng),
                    1 | 2 => mutate(&mut rng, seed),
                    _ => seed.to_string(),
                }
            })
            .collect();
        write(r, "main.fmf", docs[0].as_bytes());
        write(r, "child.fmf", docs[1].as_bytes());
        write(r, "sub/main.fmf", docs[2].as_bytes());
        if rng.below(10) == 0 {
            write(r, "bad.fmf", &[0xff, 0xfe, b'a']);
        }
        if let Ok(mut tree) = Tree::load(r) {
            loaded += 1;
            if tree.adjust(&ctx).is_ok()
                && let Ok(nodes) = tree.select(&[], &["tag: a | x: 1".into()])
            {
                let _ = fmf::dump::dump_nodes(nodes.iter().map(|n| (n.name(), n.data())));
            }
        }
        let _ = fmf::dump(r, &ctx, &[], &[]);
    }
    assert!(loaded > 10, "loaded = {loaded}");
}

const RULE_TOKENS: &[&str] = &[
    "distro",
    "arch",
    "my-dim",
    " ",
    "==",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "~=",
    "~!=",
    "~<",
    "~<=",
    "~>",
    "~>=",
    "~",
    "!~",
    "fedora",
    "fedora-40",
    "rhel-9.6",
    "centos-stream-10",
    "9",
    "1_0",
    ",",
    " and ",
    " or ",
    "and",
    "or",
    "is defined",
    "is not defined",
    "true",
    "false",
    "(",
    ")",
    "[",
    "^",
    "$",
    ".*",
    "\\",
    "é",
    "-",
    ".",
    ":",
    "\n",
];

#[test]
fn rule_language_never_panics() {
    let mut rng = Rng(0x94D049BB133111EB);
    let ctx = Context::new()
        .with("distro", "rhel-9.6")
        .with("arch", "x86_64")
        .with("weird", "");
    let mut outcomes = [0usize; 2];
    for _ in 0..20_000 {
        let n = 1 + rng.below(8);
        let rule: String = (0..n).map(|_| rng.pick(RULE_TOKENS)).collect();
        match ctx.matches(&rule) {
            Ok(_) => outcomes[0] += 1,
            Err(_) => outcomes[1] += 1,
        }
        let _ = ctx.clone().case_sensitive(false).matches(&rule);
    }
    assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
}

const FILTER_TOKENS: &[&str] = &[
    "tag", "tier", "missing", ":", ": ", " ", "|", "&", "\\|", "\\&", ",", "-", "fast", "1",
    "True", "fo.*", "(", ")", "[", "]", "^", "$", "/t", "\\", "*", "+", "?", "{2}", "é",
];

#[test]
fn filter_and_condition_languages_never_panic() {
    let mut rng = Rng(0xBF58476D1CE4E5B9);
    let mut data = Map::new();
    data.insert("tag", Value::from(vec![Value::from("fast"), Value::Int(1)]));
    data.insert("tier", Value::Int(1));
    data.insert("enabled", Value::Bool(true));
    let mut cache = fmf::RegexCache::new();
    let mut results = [0usize; 2];
    for _ in 0..2_500 {
        let n = 1 + rng.below(8);
        let expr: String = (0..n).map(|_| rng.pick(FILTER_TOKENS)).collect();
        match filter::apply(&expr, "/t1", &data, &mut cache) {
            Ok(_) => results[0] += 1,
            Err(_) => results[1] += 1,
        }
        if let Ok(c) = Condition::parse(&expr) {
            let _ = c.evaluate(&data);
        }
    }
    assert!(results[0] > 100 && results[1] > 10, "{results:?}");
    for _ in 0..5000 {
        let toks = [
            "tier", "tag", "1", "'x'", "[", "]", "(", ")", "==", "<", "in", "not", "and", "or",
            ",", "[0]", "None", "True", "-1", "1.5", "is",
        ];
        let n = 1 + rng.below(10);
        let expr: Vec<&str> = (0..n).map(|_| rng.pick(&toks)).collect();
        if let Ok(c) = Condition::parse(&expr.join(" ")) {
            let _ = c.evaluate(&data);
        }
    }
}

const SCALARS: &[&str] = &[
    "x",
    "hello world",
    "yes",
    "No",
    "true",
    "False",
    "~",
    "null",
    "",
    "42",
    "-7",
    "+3",
    "017",
    "0o17",
    "0x1F",
    "1_000",
    "1.5",
    ".5",
    "1.",
    "1e3",
    ".5e3",
    ".inf",
    "-.Inf",
    ".nan",
    "2024-01-02",
    "2024-1-2",
    "2024-01-02 10:20:30",
    "10:20",
    "'single'",
    "'it''s'",
    "\"double\"",
    "\"a'b\"",
    "[a, b]",
    "[]",
    "{}",
    "[1, 'two', \"three\", [x, y]]",
    "{A: '1', B: 2}",
    "{x: [1, 2], y: {z: 1}}",
    "a #comment",
    "a#b",
    "http://example.com/x",
    "a:b",
    "./test.sh && echo ok",
    "- not a seq",
    "fedora-40",
    "-",
    "'unterminated",
    "[a, b",
    "{a: 1, a: 2}",
    "x: y",
    "a ",
    "é ü 🚀",
    "<<",
    "=",
    "&anchor x",
    "*alias",
    "!tag x",
    "| block",
    "> folded",
    "@x",
    "`x",
    "%x",
    "[a,]",
    "{a}",
    "[a b, c]",
];
const KEYS: &[&str] = &[
    "summary",
    "test",
    "tag",
    "tag+",
    "require-",
    "/child",
    "/a/b",
    "1",
    "true",
    "~",
    "'quoted key'",
    "\"dq key\"",
    "key with space",
    "environment",
    "x",
    "x",
    "<<",
    "a:b",
    "-k",
    "?",
    "[k]",
];

fn gen_block(rng: &mut Rng, indent: usize, depth: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let n = 1 + rng.below(4);
    let seq = rng.below(4) == 0;
    for _ in 0..n {
        if rng.below(12) == 0 {
            out.push_str(&format!("{pad}# comment\n"));
        }
        let nested = depth < 3 && rng.below(4) == 0;
        if seq {
            if nested && rng.below(2) == 0 {
                // compact mapping item
                let k = rng.pick(KEYS);
                let v = rng.pick(SCALARS);
                out.push_str(&format!("{pad}- {k}: {v}\n"));
                let k2 = rng.pick(KEYS);
                let v2 = rng.pick(SCALARS);
                out.push_str(&format!("{pad}  {k2}: {v2}\n"));
            } else if nested {
                out.push_str(&format!("{pad}-\n"));
                let extra = 2 + rng.below(2);
                gen_block(rng, indent + extra, depth + 1, out);
            } else {
                out.push_str(&format!("{pad}- {}\n", rng.pick(SCALARS)));
            }
        } else {
            let k = rng.pick(KEYS);
            if nested {
                out.push_str(&format!("{pad}{k}:\n"));
                let extra = if rng.below(5) == 0 {
                    0
                } else {
                    1 + rng.below(3)
                };
                gen_block(rng, indent + extra, depth + 1, out);
            } else {
                out.push_str(&format!("{pad}{k}: {}\n", rng.pick(SCALARS)));
            }
        }
    }
}

#[test]
fn yaml_fast_path_agrees_with_full_parser() {
    let seed = std::env::var("FMF_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5851F42D4C957F2Du64);
    let mut rng = Rng(seed | 1);
    let mut docs: Vec<String> = SEED_DOCS.iter().map(|s| s.to_string()).collect();
    // Every file of the conformance corpus.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fmf-corpus/trees");
    assert!(
        corpus.is_dir(),
        "FMF corpus missing at {}",
        corpus.display()
    );
    let mut stack = vec![corpus];
    let mut corpus_docs = 0;
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).expect("read corpus directory");
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "fmf")
                && let Ok(t) = std::fs::read_to_string(&p)
            {
                docs.push(t);
                corpus_docs += 1;
            }
        }
    }
    assert!(corpus_docs > 100, "only {corpus_docs} corpus documents");
    let rounds: usize = std::env::var("FMF_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000);
    for _ in 0..rounds {
        let mut doc = String::new();
        gen_block(&mut rng, 0, 0, &mut doc);
        if rng.below(4) == 0 {
            doc = mutate(&mut rng, &doc);
        }
        docs.push(doc);
    }
    let mut fast = 0;
    for doc in &docs {
        let Some(quick) = yaml::load_fast_path(doc) else {
            continue;
        };
        fast += 1;
        match yaml::load_full(doc) {
            Ok(full) => assert_eq!(
                format!("{quick:?}"),
                format!("{full:?}"),
                "fast path differs for document:\n{doc}"
            ),
            Err(e) => panic!("fast path accepted a document the full parser rejects ({e}):\n{doc}"),
        }
    }
    eprintln!("fast path used for {fast} of {} documents", docs.len());
    assert!(
        fast > 1000,
        "fast path used for only {fast} of {} documents",
        docs.len()
    );
}
