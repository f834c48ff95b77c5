//! tmt plan discovery scenarios (acceptance: upstream `test_discover.py` and
//! `test_metadata.py`), built in temporary directories.

use std::path::Path;
use std::process::Command;

use atex::fmf::{self, Context, DiscoverOptions, FinishStep, FmfError, PrepareStep, Tree};
use serde_json::json;

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, content).expect("write");
}

fn new_tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    write(t.path(), ".fmf/version", "1\n");
    t
}

fn opts(tree: &Path, plan: Option<&str>) -> DiscoverOptions {
    let mut o = DiscoverOptions::new(tree);
    o.plan = plan.map(str::to_string);
    o
}

fn names(found: &fmf::DiscoveredTests) -> Vec<String> {
    let mut n: Vec<String> = found.names().map(str::to_string).collect();
    n.sort();
    n
}

/// The tree of upstream `test_discover.py`: six tests, one in a subdirectory.
fn discover_tree() -> tempfile::TempDir {
    let t = new_tree();
    let r = t.path();
    write(r, "plans/single.fmf", "discover:\n  how: fmf\n");
    write(
        r,
        "plans/two.fmf",
        "discover:\n  - name: group_a\n    how: fmf\n    filter: 'tag: a'\n  - name: group_b\n    how: fmf\n    filter: 'tag: b'\n",
    );
    write(
        r,
        "plans/same.fmf",
        "discover:\n  - name: one\n    how: fmf\n  - name: two\n    how: fmf\n",
    );
    write(r, "tests/main.fmf", "test: ./test.sh\n");
    write(r, "tests/t1.fmf", "tag: [a]\n");
    write(r, "tests/t2.fmf", "tag: [a]\n");
    write(r, "tests/t3.fmf", "tag: [b]\n");
    write(r, "tests/t4.fmf", "tag: [b]\n");
    write(r, "tests/t5.fmf", "tag: [a]\n");
    write(r, "tests/sub/t6.fmf", "tag: [c]\n");
    write(r, "tests/sub/test.sh", "echo hi\n");
    t
}

#[test]
fn single_unnamed_section_finds_all_tests() -> Result<(), FmfError> {
    let t = discover_tree();
    let found = fmf::discover(&opts(t.path(), Some("/plans/single")))?;
    assert_eq!(
        names(&found),
        [
            "/tests/sub/t6",
            "/tests/t1",
            "/tests/t2",
            "/tests/t3",
            "/tests/t4",
            "/tests/t5"
        ]
    );
    let t6 = found.get("/tests/sub/t6").expect("t6");
    assert_eq!(t6.source_dir, Path::new("tests/sub"));
    assert_eq!(t6.test_script(), Some("./test.sh"));
    // The tree copy is complete.
    assert!(found.root().join("tests/sub/test.sh").is_file());
    assert!(found.root().join(".fmf/version").is_file());
    assert_eq!(found.plan.name.as_deref(), Some("/plans/single"));
    Ok(())
}

#[test]
fn default_plan_without_plan_argument() -> Result<(), FmfError> {
    let t = discover_tree();
    let found = fmf::discover(&opts(t.path(), None))?;
    assert_eq!(found.tests.len(), 6);
    assert_eq!(found.plan.name, None);
    assert_eq!(found.plan.data["discover"], json!({"how": "fmf"}));
    Ok(())
}

#[test]
fn two_named_sections_with_filters() -> Result<(), FmfError> {
    let t = discover_tree();
    let found = fmf::discover(&opts(t.path(), Some("/plans/two")))?;
    assert_eq!(
        names(&found),
        [
            "/group_a/tests/t1",
            "/group_a/tests/t2",
            "/group_a/tests/t5",
            "/group_b/tests/t3",
            "/group_b/tests/t4"
        ]
    );
    for test in &found.tests {
        let section = test.name.split('/').nth(1).expect("section");
        assert!(test.source_dir.starts_with(section), "{test:?}");
        assert!(found.root().join(&test.source_dir).is_dir());
    }
    Ok(())
}

#[test]
fn two_identical_named_sections() -> Result<(), FmfError> {
    let t = discover_tree();
    let found = fmf::discover(&opts(t.path(), Some("/plans/same")))?;
    assert_eq!(found.tests.len(), 12);
    for n in ["t1", "t2", "t3", "t4", "t5", "sub/t6"] {
        assert!(found.get(&format!("/one/tests/{n}")).is_some());
        assert!(found.get(&format!("/two/tests/{n}")).is_some());
    }
    assert!(
        found
            .names()
            .all(|n| n.starts_with("/one/") || n.starts_with("/two/"))
    );
    assert_eq!(
        found.get("/two/tests/sub/t6").expect("t6").source_dir,
        Path::new("two/tests/sub")
    );
    assert!(found.root().join("two/tests/sub/test.sh").is_file());
    Ok(())
}

#[test]
fn plan_errors() {
    let t = discover_tree();
    write(t.path(), "plans/nofmf.fmf", "discover:\n  how: shell\n");
    write(
        t.path(),
        "plans/unnamed.fmf",
        "discover:\n  - how: fmf\n  - how: fmf\n",
    );
    write(
        t.path(),
        "plans/badname.fmf",
        "discover:\n  - name: a/b\n  - name: c\n",
    );
    for plan in [
        "/plans/missing",
        "/tests/t1",
        "/tests",
        "/plans/unnamed",
        "/plans/badname",
    ] {
        let r = fmf::discover(&opts(t.path(), Some(plan)));
        assert!(matches!(r, Err(FmfError::Plan { .. })), "{plan}: {r:?}");
    }
    // A plan without an fmf discover section: its other section is refused, and
    // once skipped, the plan has nothing to discover.
    let r = fmf::discover(&opts(t.path(), Some("/plans/nofmf")));
    assert!(matches!(r, Err(FmfError::UnsupportedSteps { .. })), "{r:?}");
    let mut o = opts(t.path(), Some("/plans/nofmf"));
    o.skip_unsupported_steps = true;
    let r = fmf::discover(&o);
    assert!(matches!(r, Err(FmfError::Plan { .. })), "{r:?}");
}

#[test]
fn in_tree_library_symlinked_and_requirements_propagated() -> Result<(), FmfError> {
    let t = new_tree();
    let r = t.path();
    write(
        r,
        "mylib/main.fmf",
        "summary: a library\nrequire: [lib-dep]\nrecommend: [lib-rec]\n",
    );
    write(r, "mylib/lib.sh", "true\n");
    write(
        r,
        "test.fmf",
        "test: ./x.sh\nrequire:\n  - {nick: mylib, name: /mylib}\n  - pkg\n",
    );
    let found = fmf::discover(&opts(r, None))?;
    let test = found.get("/test").expect("test");
    let link = found.root().join("libs/mylib/mylib");
    let meta = std::fs::symlink_metadata(&link).expect("link exists");
    assert!(meta.file_type().is_symlink());
    assert!(std::fs::read_link(&link).expect("readlink").is_relative());
    assert!(link.join("lib.sh").is_file(), "symlink target exists");
    assert_eq!(
        test.data["require"],
        json!([{"nick": "mylib", "name": "/mylib"}, "lib-dep", "pkg"])
    );
    assert_eq!(test.require(), ["lib-dep", "pkg"]);
    assert_eq!(test.recommend(), ["lib-rec"]);
    Ok(())
}

#[test]
fn library_by_absolute_path() -> Result<(), FmfError> {
    let lib = new_tree();
    write(lib.path(), "extlib/main.fmf", "require: [ext_dependency]\n");
    write(lib.path(), "extlib/lib.sh", "true\n");
    let t = new_tree();
    write(
        t.path(),
        "test.fmf",
        &format!(
            "test: ./x.sh\nrequire:\n  - path: {}\n    name: /extlib\n",
            lib.path().display()
        ),
    );
    // The library is outside the test tree: the user allows its directory.
    let mut o = opts(t.path(), None);
    o.library_paths = vec![lib.path().to_path_buf()];
    let found = fmf::discover(&o)?;
    let nick = lib
        .path()
        .file_name()
        .expect("basename")
        .to_string_lossy()
        .to_string();
    assert!(
        found
            .root()
            .join("libs")
            .join(&nick)
            .join("extlib/lib.sh")
            .is_file()
    );
    let test = found.get("/test").expect("test");
    assert!(test.require().contains(&"ext_dependency"));
    Ok(())
}

/// The error of discovering `tree` (no trusted library directories), checked to name the
/// test, the library and the path.
fn refused_library(tree: &Path, test: &str, library: &str, path: &str) -> FmfError {
    let err = fmf::discover(&opts(tree, None)).expect_err("a library outside the tree is refused");
    let msg = err.to_string();
    assert!(
        msg.contains(test) && msg.contains(library) && msg.contains(path),
        "{msg}"
    );
    assert!(msg.contains("outside"), "{msg}");
    assert_eq!(err.kind(), "plan");
    err
}

#[test]
fn library_path_outside_the_tree_is_refused() {
    let lib = new_tree();
    write(lib.path(), "extlib/main.fmf", "require: [ext_dependency]\n");
    write(lib.path(), "extlib/lib.sh", "true\n");
    let lib_path = lib.path().display().to_string();

    // An absolute path.
    let t = new_tree();
    write(
        t.path(),
        "test.fmf",
        &format!("test: ./x.sh\nrequire:\n  - path: {lib_path}\n    name: /extlib\n"),
    );
    let err = refused_library(t.path(), "/test", "/extlib", &lib_path);
    assert!(matches!(err, FmfError::LibraryPath { .. }), "{err:?}");

    // A relative path that climbs out of the tree.
    let rel = format!(
        "../{}",
        lib.path().file_name().expect("name").to_string_lossy()
    );
    let t = tempfile::tempdir_in(lib.path().parent().expect("parent")).expect("tempdir");
    write(t.path(), ".fmf/version", "1\n");
    write(
        t.path(),
        "test.fmf",
        &format!("test: ./x.sh\nrequire:\n  - path: {rel}\n    name: /extlib\n"),
    );
    refused_library(t.path(), "/test", "/extlib", &rel);

    // A path inside the tree that is a symlink to a directory outside it; and the same
    // library reached through a nested library's own `require`.
    let t = new_tree();
    std::os::unix::fs::symlink(lib.path(), t.path().join("vendored")).expect("symlink");
    write(
        t.path(),
        "test.fmf",
        "test: ./x.sh\nrequire:\n  - path: vendored\n    name: /extlib\n",
    );
    refused_library(t.path(), "/test", "/extlib", "vendored");
    let t = new_tree();
    write(
        t.path(),
        "inner/main.fmf",
        &format!("require:\n  - path: {lib_path}\n    name: /extlib\n"),
    );
    write(
        t.path(),
        "test.fmf",
        "test: ./x.sh\nrequire:\n  - path: inner\n    name: /inner\n",
    );
    refused_library(t.path(), "/inner", "/extlib", &lib_path);

    // A directory allowed explicitly does not allow its parent.
    let t = new_tree();
    write(
        t.path(),
        "test.fmf",
        &format!("test: ./x.sh\nrequire:\n  - path: {lib_path}\n    name: /extlib\n"),
    );
    let mut o = opts(t.path(), None);
    o.library_paths = vec![lib.path().join("extlib")];
    assert!(matches!(
        fmf::discover(&o),
        Err(FmfError::LibraryPath { .. })
    ));
    // A library inside the tree needs no permission.
    let t = new_tree();
    write(t.path(), "mylib/main.fmf", "require: [dep]\n");
    write(
        t.path(),
        "test.fmf",
        "test: ./x.sh\nrequire:\n  - path: mylib\n    name: /mylib\n",
    );
    let found = fmf::discover(&opts(t.path(), None)).expect("in-tree library by path");
    assert!(found.get("/test").expect("test").require().contains(&"dep"));
}

#[test]
fn library_path_leaving_its_repository_is_refused() {
    let outside = new_tree();
    write(outside.path(), "extlib/main.fmf", "require: [leaked]\n");
    let repo = new_tree();
    write(repo.path(), "lib/main.fmf", "require: [fine]\n");
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "init"]);
    let cache = tempfile::tempdir().expect("cache");
    let climb = format!("../../../../../../../../..{}", outside.path().display());
    for (path, ok) in [("", true), (climb.as_str(), false)] {
        let t = new_tree();
        let name = if ok { "/lib" } else { "/extlib" };
        let path_key = if path.is_empty() {
            String::new()
        } else {
            format!("    path: {path}\n")
        };
        write(
            t.path(),
            "test.fmf",
            &format!(
                "test: ./x.sh\nrequire:\n  - url: {}\n    name: {name}\n{path_key}",
                repo.path().display()
            ),
        );
        let mut o = opts(t.path(), None);
        o.cache_dir = Some(cache.path().to_path_buf());
        // Trusting the outside directory does not let a repository's library leave it.
        o.library_paths = vec![outside.path().to_path_buf()];
        let r = fmf::discover(&o);
        if ok {
            let found = r.expect("library from the repository");
            assert!(
                found
                    .get("/test")
                    .expect("test")
                    .require()
                    .contains(&"fine")
            );
        } else {
            let err = r.expect_err("a path out of the repository is refused");
            let msg = err.to_string();
            assert!(matches!(err, FmfError::LibraryPath { .. }), "{err:?}");
            assert!(msg.contains("/test") && msg.contains(path), "{msg}");
        }
    }
}

#[test]
fn invalid_require_and_recommend() {
    let t = new_tree();
    write(t.path(), "a.fmf", "test: x\nrecommend: [{name: /lib}]\n");
    assert!(fmf::discover(&opts(t.path(), None)).is_err());
    let t = new_tree();
    write(t.path(), "a.fmf", "test: x\nrequire: [[nested]]\n");
    assert!(fmf::discover(&opts(t.path(), None)).is_err());
    let t = new_tree();
    write(
        t.path(),
        "a.fmf",
        "test: x\nrequire: [{name: /nick-missing}]\n",
    );
    assert!(fmf::discover(&opts(t.path(), None)).is_err());
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git")
        .status
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn remote_section_fetched_with_git() -> Result<(), FmfError> {
    let repo = new_tree();
    write(
        repo.path(),
        "remote-test/main.fmf",
        "test: ./r.sh\nsummary: remote\n",
    );
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "init"]);
    let t = new_tree();
    write(
        t.path(),
        "plan.fmf",
        &format!(
            "discover:\n  - name: local\n    how: fmf\n  - name: remote\n    how: fmf\n    url: {}\n",
            repo.path().display()
        ),
    );
    write(t.path(), "local-test.fmf", "test: ./l.sh\n");
    let cache = tempfile::tempdir().expect("cache");
    let mut o = opts(t.path(), Some("/plan"));
    o.cache_dir = Some(cache.path().to_path_buf());
    let found = fmf::discover(&o)?;
    assert_eq!(names(&found), ["/local/local-test", "/remote/remote-test"]);
    assert!(found.root().join("remote/remote-test/main.fmf").is_file());
    assert!(!found.root().join("remote/.git").exists());
    // Cached: works again even after the origin disappears.
    drop(repo);
    let again = fmf::discover(&o)?;
    assert_eq!(again.tests.len(), 2);
    Ok(())
}

#[test]
fn remote_fetch_failure_is_a_clean_error() {
    let t = new_tree();
    write(
        t.path(),
        "plan.fmf",
        "discover:\n  how: fmf\n  url: /nonexistent/repository/for/atex\n",
    );
    let cache = tempfile::tempdir().expect("cache");
    let mut o = opts(t.path(), Some("/plan"));
    o.cache_dir = Some(cache.path().to_path_buf());
    match fmf::discover(&o) {
        Err(e @ FmfError::Fetch { .. }) => assert!(e.to_string().contains("/nonexistent")),
        other => panic!("expected a fetch error, got {other:?}"),
    }
}

/// The tree of upstream `test_metadata.py`.
fn metadata_tree() -> tempfile::TempDir {
    let t = new_tree();
    let r = t.path();
    write(
        r,
        "plain.fmf",
        "summary: plain test\ntest: ./plain.sh\nrequire: some-pkg\nduration: 1h 5m\n",
    );
    write(r, "notest.fmf", "summary: no test key\n");
    write(r, "story.fmf", "story: As a user\ntest: ./s.sh\n");
    write(r, "manual.fmf", "test: ./m.sh\nmanual: true\n");
    write(r, "disabled.fmf", "test: ./d.sh\nenabled: false\n");
    write(
        r,
        "virtual.fmf",
        "test: ./v.sh\n/subtest:\n  summary: sub\n",
    );
    write(
        r,
        "same/file.fmf",
        "/a:\n  test: ./a.sh\n/b:\n  test: ./b.sh\n",
    );
    write(r, "inherit/main.fmf", "test: ./i.sh\nrequire: [foo, bar]\n");
    write(r, "inherit/child.fmf", "require+: [baz]\n");
    write(r, "filter/main.fmf", "test: ./f.sh\ntag: []\ntier: 2\n");
    write(r, "filter/filter1.fmf", "tag: [tagged]\n");
    write(r, "filter/filter2.fmf", "summary: two\n");
    write(r, "filter/filter3.fmf", "summary: three\n");
    write(r, "filter/filter4.fmf", "tier: 1\n");
    write(r, "filter/filter5.fmf", "summary: five\n");
    write(
        r,
        "plans/filtered.fmf",
        "discover:\n  how: fmf\n  filter: 'tag:-tagged'\n  test: [filter1, filter3, filter4, filter5]\n  exclude: [filter3]\n",
    );
    write(
        r,
        "plans/names.fmf",
        "discover:\n  how: fmf\n  test: [filter4, filter5]\n",
    );
    write(
        r,
        "adjusted.fmf",
        "test: ./adj.sh\nadjust:\n  - when: distro == fedora\n    eq: 1\n  - when: distro > fedora-39 and distro < fedora-41\n    range: 1\n  - when: distro == rhel\n    never: 1\n",
    );
    write(
        r,
        "adjusted-dict.fmf",
        "test: ./adj.sh\nadjust:\n  when: arch == x86_64\n  dict: 1\n",
    );
    write(
        r,
        "plans/env.fmf",
        "discover:\n  how: fmf\n  test: envtest\nenvironment:\n  FROM_PLAN: plan value\n  NUM: 1\nenvironment-file: [vars.env]\nprepare:\n  - how: install\n    package: [vim, make]\n  - how: shell\n    script: echo prep\n  - how: ansible\n    playbook: x.yml\nfinish:\n  how: shell\n  script: [echo a, echo b]\ncontext:\n  distro: fedora-40\n",
    );
    write(
        r,
        "vars.env",
        "# comment\nFROM_FILE=file\nexport QUOTED=\"q v\"\nFROM_PLAN=overridden\n",
    );
    write(
        r,
        "envtest.fmf",
        "test: ./e.sh\nenvironment:\n  FROM_TEST: test value\ntty: true\nextra-priority: 5\ntag: [x, y]\n",
    );
    t
}

#[test]
fn metadata_preserved_and_non_tests_excluded() -> Result<(), FmfError> {
    let t = metadata_tree();
    let found = fmf::discover(&opts(t.path(), None))?;
    let plain = found.get("/plain").expect("plain");
    assert_eq!(plain.data["summary"], json!("plain test"));
    assert_eq!(plain.test_script(), Some("./plain.sh"));
    assert_eq!(plain.data["require"], json!("some-pkg"));
    assert_eq!(plain.require(), ["some-pkg"]);
    assert_eq!(plain.duration(), Some("1h 5m"));
    for absent in ["/notest", "/story", "/manual", "/disabled", "/virtual"] {
        assert!(found.get(absent).is_none(), "{absent}");
    }
    assert!(found.get("/virtual/subtest").is_some());
    let (a, b) = (found.get("/same/file/a"), found.get("/same/file/b"));
    assert_eq!(a.expect("a").source_dir, b.expect("b").source_dir);
    assert_eq!(a.expect("a").source_dir, Path::new("same"));
    assert_eq!(
        found.get("/inherit/child").expect("child").data["require"],
        json!(["foo", "bar", "baz"])
    );
    Ok(())
}

#[test]
fn plan_filter_test_and_exclude_combine() -> Result<(), FmfError> {
    let t = metadata_tree();
    let found = fmf::discover(&opts(t.path(), Some("/plans/filtered")))?;
    assert_eq!(names(&found), ["/filter/filter4", "/filter/filter5"]);
    Ok(())
}

#[test]
fn argument_filters_names_excludes_conditions_combine() -> Result<(), FmfError> {
    let t = metadata_tree();
    let mut o = opts(t.path(), None);
    o.names = vec!["filter[1245]".into()];
    o.filters = vec!["tag:-tagged".into()];
    o.excludes = vec!["filter5".into()];
    o.conditions = vec!["tier < 2".into()];
    let found = fmf::discover(&o)?;
    assert_eq!(names(&found), ["/filter/filter4"]);
    Ok(())
}

#[test]
fn argument_names_add_to_plan_tests() -> Result<(), FmfError> {
    let t = metadata_tree();
    let mut o = opts(t.path(), Some("/plans/names"));
    o.names = vec!["filter2".into()];
    let found = fmf::discover(&o)?;
    assert_eq!(
        names(&found),
        ["/filter/filter2", "/filter/filter4", "/filter/filter5"]
    );
    Ok(())
}

#[test]
fn adjust_with_context() -> Result<(), FmfError> {
    let t = metadata_tree();
    let mut o = opts(t.path(), None);
    o.context = Context::new()
        .with("distro", "fedora-40")
        .with("arch", "x86_64");
    let found = fmf::discover(&o)?;
    let adj = &found.get("/adjusted").expect("adjusted").data;
    assert_eq!(adj.get("eq"), Some(&json!(1)));
    assert_eq!(adj.get("range"), Some(&json!(1)));
    assert_eq!(adj.get("never"), None);
    assert!(
        adj.get("adjust").is_none(),
        "adjust rules are not test data"
    );
    let dict = &found.get("/adjusted-dict").expect("dict").data;
    assert_eq!(dict.get("dict"), Some(&json!(1)));
    // Without context nothing applies.
    let plain = fmf::discover(&opts(t.path(), None))?;
    let adj = &plain.get("/adjusted").expect("adjusted").data;
    assert!(adj.get("eq").is_none() && adj.get("range").is_none());
    Ok(())
}

#[test]
fn plan_environment_steps_and_test_accessors() -> Result<(), FmfError> {
    let t = metadata_tree();
    // The plan has an `ansible` prepare step atex cannot run.
    let mut o = opts(t.path(), Some("/plans/env"));
    o.skip_unsupported_steps = true;
    let found = fmf::discover(&o)?;
    assert_eq!(found.plan.skipped_steps.len(), 1);
    assert_eq!(found.plan.skipped_steps[0].how, "ansible");
    let env: Vec<(&str, &str)> = found
        .plan
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("FROM_FILE", "file"),
            ("QUOTED", "q v"),
            ("FROM_PLAN", "plan value"),
            ("NUM", "1")
        ]
    );
    assert_eq!(
        found.plan.prepare,
        [
            PrepareStep::Install {
                packages: vec!["vim".into(), "make".into()]
            },
            PrepareStep::Shell {
                scripts: vec!["echo prep".into()]
            }
        ]
    );
    assert_eq!(
        found.plan.finish,
        [FinishStep::Shell {
            scripts: vec!["echo a".into(), "echo b".into()]
        }]
    );
    assert_eq!(
        found.plan.context.get("distro").map(String::as_str),
        Some("fedora-40")
    );
    assert_eq!(names(&found), ["/envtest"]);
    let test = &found.tests[0];
    // Plan environment stays separate from test data.
    assert_eq!(test.data["environment"], json!({"FROM_TEST": "test value"}));
    assert_eq!(
        test.environment().get("FROM_TEST").map(String::as_str),
        Some("test value")
    );
    assert!(test.tty());
    assert_eq!(test.priority(), 5);
    assert_eq!(test.tags(), ["x", "y"]);
    assert_eq!(found.all_required_packages(), ["vim", "make"]);
    assert_eq!(found.all_packages(), ["make", "vim"]);
    assert!(test.to_json_line().starts_with("{\"data\":{"));
    Ok(())
}

#[test]
fn discover_accepts_a_prebuilt_tree() -> Result<(), FmfError> {
    let t = metadata_tree();
    let tree = Tree::load(t.path())?;
    let mut o = DiscoverOptions::new("/unused");
    o.context = Context::new().with("distro", "fedora-40");
    let found = fmf::discover_tree(&tree, &o)?;
    assert!(found.get("/plain").is_some());
    assert_eq!(
        found.get("/adjusted").expect("adjusted").data.get("eq"),
        Some(&json!(1))
    );
    // The caller's tree is not adjusted.
    let raw = tree.find("/adjusted").expect("node");
    assert!(raw.data().get("eq").is_none());
    Ok(())
}

#[test]
fn section_link_selects_tests() -> Result<(), FmfError> {
    let t = new_tree();
    let r = t.path();
    write(
        r,
        "plan.fmf",
        "discover:\n  how: fmf\n  link: 'verifies:.*/123$'\n",
    );
    write(
        r,
        "a.fmf",
        "test: ./a.sh\nlink:\n  - verifies: https://bugs.example.com/123\n",
    );
    write(
        r,
        "b.fmf",
        "test: ./b.sh\nlink: https://bugs.example.com/123\n",
    );
    write(r, "c.fmf", "test: ./c.sh\n");
    let found = fmf::discover(&opts(r, Some("/plan")))?;
    assert_eq!(names(&found), ["/a"]);
    write(
        r,
        "plan.fmf",
        "discover:\n  how: fmf\n  link: [example.com/123]\n",
    );
    let found = fmf::discover(&opts(r, Some("/plan")))?;
    assert_eq!(names(&found), ["/a", "/b"]);
    Ok(())
}

#[test]
fn missing_tree_path_is_an_error() {
    let t = new_tree();
    let r = fmf::discover(&opts(&t.path().join("does/not/exist"), None));
    assert!(matches!(r, Err(FmfError::Root { .. })), "{r:?}");
}

// ---------------------------------------------------------------------------
// Plan steps atex cannot run (issue 9, item 8).

fn unsupported_steps_tree() -> tempfile::TempDir {
    let t = new_tree();
    let r = t.path();
    write(
        r,
        "plans/mixed.fmf",
        concat!(
            "discover:\n  - name: tests\n    how: fmf\n  - name: scripted\n    how: shell\n    tests: [{name: x, test: echo x}]\n",
            "prepare:\n  - how: install\n    package: [make]\n  - name: configure\n    how: ansible\n    playbook: site.yml\n  - how: shell\n    script: echo prep\n",
            "finish:\n  - how: ansible\n    playbook: teardown.yml\n  - how: shell\n    script: echo done\n",
        ),
    );
    write(r, "tests/a.fmf", "test: echo a\n");
    t
}

#[test]
fn unsupported_plan_steps_refuse_the_plan() {
    let t = unsupported_steps_tree();
    let err = fmf::discover(&opts(t.path(), Some("/plans/mixed"))).expect_err("refused");
    let FmfError::UnsupportedSteps { plan, steps } = &err else {
        panic!("expected UnsupportedSteps, got {err:?}");
    };
    assert_eq!(plan, "/plans/mixed");
    let seen: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s.step.as_str(), s.how.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("discover", "shell"),
            ("prepare", "ansible"),
            ("finish", "ansible")
        ]
    );
    let text = err.to_string();
    for needle in [
        "/plans/mixed",
        "prepare",
        "ansible",
        "configure",
        "discover",
        "shell",
    ] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }
}

#[test]
fn unsupported_plan_steps_skipped_on_request() -> Result<(), FmfError> {
    let t = unsupported_steps_tree();
    let mut o = opts(t.path(), Some("/plans/mixed"));
    o.skip_unsupported_steps = true;
    let found = fmf::discover(&o)?;
    assert_eq!(names(&found), ["/tests/tests/a"]);
    assert_eq!(
        found.plan.prepare,
        [
            PrepareStep::Install {
                packages: vec!["make".into()]
            },
            PrepareStep::Shell {
                scripts: vec!["echo prep".into()]
            }
        ]
    );
    assert_eq!(
        found.plan.finish,
        [FinishStep::Shell {
            scripts: vec!["echo done".into()]
        }]
    );
    let skipped: Vec<(&str, &str)> = found
        .plan
        .skipped_steps
        .iter()
        .map(|s| (s.step.as_str(), s.how.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("discover", "shell"),
            ("prepare", "ansible"),
            ("finish", "ansible")
        ]
    );
    Ok(())
}

#[test]
fn steps_without_how_default_to_shell_and_non_fmf_execute_is_refused() -> Result<(), FmfError> {
    let t = new_tree();
    let r = t.path();
    write(
        r,
        "plan.fmf",
        "discover: {how: fmf}\nprepare: {script: echo p}\nfinish: {script: echo f}\n",
    );
    write(r, "t.fmf", "test: echo t\n");
    let found = fmf::discover(&opts(r, Some("/plan")))?;
    assert_eq!(
        found.plan.prepare,
        [PrepareStep::Shell {
            scripts: vec!["echo p".into()]
        }]
    );
    assert_eq!(
        found.plan.finish,
        [FinishStep::Shell {
            scripts: vec!["echo f".into()]
        }]
    );
    write(
        r,
        "plan.fmf",
        "discover: {how: fmf}\nexecute: {how: upgrade}\n",
    );
    let err = fmf::discover(&opts(r, Some("/plan"))).expect_err("refused");
    assert!(
        matches!(&err, FmfError::UnsupportedSteps { steps, .. } if steps[0].step == "execute" && steps[0].how == "upgrade"),
        "{err:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Python `re` syntax (issue 9, item 10).

fn regex_tree() -> tempfile::TempDir {
    let t = new_tree();
    let r = t.path();
    for n in ["discover", "prepare", "execute", "other", "aa", "ab", "aab"] {
        write(r, &format!("tests/{n}.fmf"), "test: echo x\n");
    }
    write(
        r,
        "plans/lookahead.fmf",
        "discover:\n  how: fmf\n  test: \"^/tests/(?!discover|prepare|execute)\"\n  exclude: '(?<=/tests/)a'\n",
    );
    t
}

#[test]
fn python_lookaround_in_plan_test_and_exclude() -> Result<(), FmfError> {
    let t = regex_tree();
    let found = fmf::discover(&opts(t.path(), Some("/plans/lookahead")))?;
    assert_eq!(names(&found), ["/tests/other"]);
    Ok(())
}

#[test]
fn python_backreference_and_lookbehind_in_names_and_excludes() -> Result<(), FmfError> {
    let t = regex_tree();
    let mut o = opts(t.path(), None);
    o.names = vec![r"^/tests/(\w)\1".into()];
    let found = fmf::discover(&o)?;
    assert_eq!(names(&found), ["/tests/aa", "/tests/aab"]);
    o.excludes = vec![r"(?<=a)b$".into()];
    let found = fmf::discover(&o)?;
    assert_eq!(names(&found), ["/tests/aa"]);
    // Python's named groups and named back-references.
    o.excludes = vec![r"/(?P<c>a)(?P=c)b".into()];
    let found = fmf::discover(&o)?;
    assert_eq!(names(&found), ["/tests/aa"]);
    // Invalid in Python too: still a precise regex error.
    o.names = vec!["(?P=missing)x".into()];
    match fmf::discover(&o) {
        Err(FmfError::Regex { pattern, .. }) => assert_eq!(pattern, "(?P=missing)x"),
        other => panic!("expected a regex error, got {other:?}"),
    }
    Ok(())
}

#[test]
fn python_lookahead_in_filters_and_link() -> Result<(), FmfError> {
    let t = new_tree();
    let r = t.path();
    write(
        r,
        "fast.fmf",
        "test: echo\ntag: [fast]\nlink: [https://bugs/12]\n",
    );
    write(
        r,
        "faster.fmf",
        "test: echo\ntag: [faster]\nlink: [https://bugs/13]\n",
    );
    let mut o = opts(r, None);
    o.filters = vec![r"tag: fast(?!er)".into()];
    assert_eq!(names(&fmf::discover(&o)?), ["/fast"]);
    write(
        r,
        "plan.fmf",
        "discover:\n  how: fmf\n  link: 'bugs/(?!12)'\n",
    );
    assert_eq!(names(&fmf::discover(&opts(r, Some("/plan")))?), ["/faster"]);
    Ok(())
}

// ---------------------------------------------------------------------------
// Local `path`, `ref`, `modified-*` and environment files (issue 9, items 9 and 10).

fn git_out(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A git repository whose `main` branch has `/tests/a` and `/tests/b`.
fn git_tree() -> tempfile::TempDir {
    let t = new_tree();
    let r = t.path();
    write(r, "tests/a/main.fmf", "test: ./a.sh\n");
    write(r, "tests/a/a.sh", "echo a\n");
    write(r, "tests/b/main.fmf", "test: ./b.sh\n");
    write(r, "tests/b/b.sh", "echo b\n");
    write(r, "README", "top-level file\n");
    git(r, &["init", "-q", "-b", "main"]);
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "init"]);
    t
}

#[test]
fn local_path_outside_the_tree_is_refused() {
    let outer = tempfile::tempdir().expect("tempdir");
    let tree = outer.path().join("tree");
    let other = outer.path().join("other");
    write(&tree, ".fmf/version", "1\n");
    write(&other, ".fmf/version", "1\n");
    write(&other, "secret.fmf", "test: echo secret\n");
    std::os::unix::fs::symlink(&other, tree.join("link")).expect("symlink");
    for path in ["../other", "link", "/../other"] {
        write(
            &tree,
            "plan.fmf",
            &format!("discover:\n  how: fmf\n  path: '{path}'\n"),
        );
        match fmf::discover(&opts(&tree, Some("/plan"))) {
            Err(e @ FmfError::PlanKey { .. }) => {
                let text = e.to_string();
                assert!(text.contains("path") && text.contains(path), "{text}");
            }
            other => panic!("{path}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn local_path_inside_the_tree_is_its_own_tree() -> Result<(), FmfError> {
    let t = new_tree();
    let r = t.path();
    write(r, "plan.fmf", "discover:\n  how: fmf\n  path: /sub\n");
    write(r, "top.fmf", "test: echo top\n");
    write(r, "sub/.fmf/version", "1\n");
    write(r, "sub/inner.fmf", "test: echo inner\n");
    let found = fmf::discover(&opts(r, Some("/plan")))?;
    assert_eq!(names(&found), ["/inner"]);
    assert!(found.root().join("inner.fmf").is_file());
    Ok(())
}

#[test]
fn local_ref_checks_out_that_revision_without_touching_the_tree() -> Result<(), FmfError> {
    let t = git_tree();
    let r = t.path();
    git(r, &["tag", "v1"]);
    write(r, "tests/c/main.fmf", "test: ./c.sh\n");
    write(r, "tests/a/a.sh", "echo changed\n");
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "add c"]);
    write(r, "plans/old.fmf", "discover:\n  how: fmf\n  ref: v1\n");
    let head = git_out(r, &["rev-parse", "HEAD"]);
    let found = fmf::discover(&opts(r, Some("/plans/old")))?;
    assert_eq!(names(&found), ["/tests/a", "/tests/b"]);
    assert_eq!(
        std::fs::read_to_string(found.root().join("tests/a/a.sh")).expect("copied"),
        "echo a\n"
    );
    assert!(!found.root().join(".git").exists());
    // The user's checkout is as it was.
    assert_eq!(git_out(r, &["rev-parse", "HEAD"]), head);
    assert_eq!(
        std::fs::read_to_string(r.join("tests/a/a.sh")).expect("read"),
        "echo changed\n"
    );
    // A ref that does not exist is an error naming it.
    write(
        r,
        "plans/old.fmf",
        "discover:\n  how: fmf\n  ref: no-such-ref\n",
    );
    let err = fmf::discover(&opts(r, Some("/plans/old"))).expect_err("unknown ref");
    assert!(err.to_string().contains("no-such-ref"), "{err}");
    Ok(())
}

#[test]
fn refs_starting_with_a_dash_are_not_options() {
    let t = git_tree();
    let r = t.path();
    let marker = r.join("injected");
    for reference in ["--orphan=evil", "--detach"] {
        write(
            r,
            "plan.fmf",
            &format!("discover:\n  how: fmf\n  ref: '{reference}'\n"),
        );
        let err = fmf::discover(&opts(r, Some("/plan"))).expect_err("dash ref");
        assert!(err.to_string().contains(reference), "{err}");
    }
    // The same through a remote (url) section.
    let t2 = new_tree();
    for reference in ["--orphan=evil", "--detach"] {
        write(
            t2.path(),
            "plan.fmf",
            &format!(
                "discover:\n  how: fmf\n  url: {}\n  ref: '{reference}'\n",
                r.display()
            ),
        );
        let cache = tempfile::tempdir().expect("cache");
        let mut o = opts(t2.path(), Some("/plan"));
        o.cache_dir = Some(cache.path().to_path_buf());
        let err = fmf::discover(&o).expect_err("dash ref");
        let text = atex::error::chain(&err).to_string();
        assert!(text.contains(reference), "{text}");
    }
    // modified-ref goes to `git diff`: `--output=FILE` must not write a file.
    write(
        r,
        "plan.fmf",
        &format!(
            "discover:\n  how: fmf\n  modified-only: true\n  modified-ref: '--output={}'\n",
            marker.display()
        ),
    );
    assert!(fmf::discover(&opts(r, Some("/plan"))).is_err());
    assert!(!marker.exists(), "git wrote {}", marker.display());
}

#[test]
fn modified_only_selects_tests_in_changed_directories() -> Result<(), FmfError> {
    let t = git_tree();
    let r = t.path();
    write(
        r,
        "plans/modified.fmf",
        "discover:\n  how: fmf\n  modified-only: true\n  modified-ref: main\n",
    );
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "plan"]);
    git(r, &["checkout", "-q", "-b", "feature"]);
    // Nothing changed on the branch: nothing is selected.
    let found = fmf::discover(&opts(r, Some("/plans/modified")))?;
    assert_eq!(names(&found), Vec::<String>::new());
    write(r, "tests/b/b.sh", "echo b changed\n");
    write(r, "README", "changed at the top\n");
    git(r, &["commit", "-q", "-am", "change b"]);
    let found = fmf::discover(&opts(r, Some("/plans/modified")))?;
    assert_eq!(names(&found), ["/tests/b"]);
    // The rest of the tree is still there for the selected tests.
    assert!(found.root().join("tests/a/a.sh").is_file());
    Ok(())
}

#[test]
fn modified_only_defaults_to_the_origin_default_branch() -> Result<(), FmfError> {
    let upstream = git_tree();
    let work = tempfile::tempdir().expect("tempdir");
    let clone = work.path().join("clone");
    git_out(
        work.path(),
        &[
            "clone",
            "-q",
            "--",
            &upstream.path().display().to_string(),
            "clone",
        ],
    );
    write(
        &clone,
        "plans/modified.fmf",
        "discover:\n  how: fmf\n  modified-only: true\n",
    );
    write(&clone, "tests/a/a.sh", "echo a changed\n");
    git(&clone, &["checkout", "-q", "-b", "feature"]);
    git(&clone, &["add", "-A"]);
    git(&clone, &["commit", "-q", "-m", "change a"]);
    let found = fmf::discover(&opts(&clone, Some("/plans/modified")))?;
    assert_eq!(names(&found), ["/tests/a"]);
    // Without an origin there is no default branch: a clear error, not "all tests".
    let alone = git_tree();
    write(
        alone.path(),
        "plans/modified.fmf",
        "discover:\n  how: fmf\n  modified-only: true\n",
    );
    let err = fmf::discover(&opts(alone.path(), Some("/plans/modified"))).expect_err("no ref");
    assert!(err.to_string().contains("modified-ref"), "{err}");
    Ok(())
}

#[test]
fn modified_url_compares_against_another_repository() -> Result<(), FmfError> {
    let upstream = git_tree();
    // An unrelated copy of upstream's history with one more commit.
    let work = tempfile::tempdir().expect("tempdir");
    let local = work.path().join("local");
    git_out(
        work.path(),
        &[
            "clone",
            "-q",
            "--",
            &upstream.path().display().to_string(),
            "local",
        ],
    );
    git(&local, &["remote", "remove", "origin"]);
    write(&local, "tests/b/b.sh", "echo b changed\n");
    write(
        &local,
        "plans/modified.fmf",
        &format!(
            "discover:\n  how: fmf\n  modified-only: true\n  modified-url: {}\n  modified-ref: reference/main\n",
            upstream.path().display()
        ),
    );
    git(&local, &["add", "-A"]);
    git(&local, &["commit", "-q", "-m", "change b"]);
    let found = fmf::discover(&opts(&local, Some("/plans/modified")))?;
    assert_eq!(names(&found), ["/tests/b"]);
    // The user's repository gained no remote.
    assert_eq!(git_out(&local, &["remote"]), "");
    Ok(())
}

#[test]
fn ref_and_modified_only_need_git() {
    let t = new_tree();
    write(t.path(), "t.fmf", "test: echo\n");
    for key in ["ref: main", "modified-only: true"] {
        write(
            t.path(),
            "plan.fmf",
            &format!("discover:\n  how: fmf\n  {key}\n"),
        );
        let err = fmf::discover(&opts(t.path(), Some("/plan"))).expect_err("no git");
        assert!(matches!(err, FmfError::PlanKey { .. }), "{key}: {err:?}");
    }
}

#[test]
fn environment_files_outside_the_tree_are_refused() {
    let outer = tempfile::tempdir().expect("tempdir");
    let tree = outer.path().join("tree");
    write(&tree, ".fmf/version", "1\n");
    write(&tree, "t.fmf", "test: echo\n");
    write(outer.path(), "secret.env", "SECRET=1\n");
    std::os::unix::fs::symlink(outer.path().join("secret.env"), tree.join("link.env"))
        .expect("symlink");
    let absolute = outer.path().join("secret.env").display().to_string();
    for entry in ["../secret.env", "link.env", absolute.as_str()] {
        write(
            &tree,
            "plan.fmf",
            &format!("discover: {{how: fmf}}\nenvironment-file: ['{entry}']\n"),
        );
        match fmf::discover(&opts(&tree, Some("/plan"))) {
            Err(e @ FmfError::PlanKey { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(entry) && text.contains("environment-file"),
                    "{text}"
                );
            }
            other => panic!("{entry}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn environment_file_urls_are_refused_clearly() {
    let t = new_tree();
    write(t.path(), "t.fmf", "test: echo\n");
    write(
        t.path(),
        "plan.fmf",
        "discover: {how: fmf}\nenvironment-file: ['https://example.com/vars.env']\n",
    );
    match fmf::discover(&opts(t.path(), Some("/plan"))) {
        Err(e @ FmfError::PlanKey { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("https://example.com/vars.env") && text.contains("URL"),
                "{text}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn modified_only_and_ref_in_a_tree_below_the_repository_top() -> Result<(), FmfError> {
    let repo = tempfile::tempdir().expect("tempdir");
    let r = repo.path();
    let tree = r.join("fmf-tree");
    write(&tree, ".fmf/version", "1\n");
    write(&tree, "tests/a/main.fmf", "test: ./a.sh\n");
    write(&tree, "tests/b/main.fmf", "test: ./b.sh\n");
    // A directory of the repository outside the tree with the same name as a test's.
    write(r, "tests/a/unrelated.txt", "x\n");
    write(
        &tree,
        "plans/modified.fmf",
        "discover:\n  how: fmf\n  modified-only: true\n  modified-ref: base\n",
    );
    git(r, &["init", "-q", "-b", "main"]);
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "init"]);
    git(r, &["tag", "base"]);
    write(&tree, "tests/b/b.sh", "echo b\n");
    write(r, "tests/a/unrelated.txt", "changed\n");
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "change b"]);
    let found = fmf::discover(&opts(&tree, Some("/plans/modified")))?;
    assert_eq!(names(&found), ["/tests/b"]);
    // The same selection at an older revision: nothing changed there.
    write(
        &tree,
        "plans/modified.fmf",
        "discover:\n  how: fmf\n  ref: base\n  modified-only: true\n  modified-ref: base\n",
    );
    let found = fmf::discover(&opts(&tree, Some("/plans/modified")))?;
    assert_eq!(names(&found), Vec::<String>::new());
    // `ref` alone: the tree as it was at `base`.
    write(
        &tree,
        "plans/modified.fmf",
        "discover:\n  how: fmf\n  ref: base\n",
    );
    let found = fmf::discover(&opts(&tree, Some("/plans/modified")))?;
    assert_eq!(names(&found), ["/tests/a", "/tests/b"]);
    assert!(!found.root().join("tests/b/b.sh").exists());
    Ok(())
}

#[test]
fn phase_keys_atex_cannot_honour_are_refused() {
    let t = new_tree();
    write(t.path(), "t.fmf", "test: echo\n");
    for (plan, key) in [
        (
            "discover: {how: fmf, when: distro == fedora}",
            "discover when",
        ),
        (
            "discover: {how: fmf, adjust-tests: {duration: 1h}}",
            "discover adjust-tests",
        ),
        (
            "discover: {how: fmf, dist-git-source: true}",
            "discover dist-git-source",
        ),
        (
            "discover: {how: fmf}\nprepare: {how: shell, script: x, when: arch == s390x}",
            "prepare when",
        ),
        (
            "discover: {how: fmf}\nfinish: {how: shell, script: x, where: [server]}",
            "finish where",
        ),
    ] {
        write(t.path(), "plan.fmf", &format!("{plan}\n"));
        match fmf::discover(&opts(t.path(), Some("/plan"))) {
            Err(FmfError::PlanKey { key: k, .. }) => assert_eq!(k, key, "{plan}"),
            other => panic!("{plan}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn legacy_repository_and_revision_keys() -> Result<(), FmfError> {
    let repo = git_tree();
    git(repo.path(), &["tag", "v1"]);
    write(repo.path(), "tests/c/main.fmf", "test: ./c.sh\n");
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "c"]);
    let t = new_tree();
    write(t.path(), "local.fmf", "test: echo local\n");
    write(
        t.path(),
        "plan.fmf",
        &format!(
            "discover:\n  how: fmf\n  repository: {}\n  revision: v1\n",
            repo.path().display()
        ),
    );
    let cache = tempfile::tempdir().expect("cache");
    let mut o = opts(t.path(), Some("/plan"));
    o.cache_dir = Some(cache.path().to_path_buf());
    let found = fmf::discover(&o)?;
    assert_eq!(names(&found), ["/tests/a", "/tests/b"]);
    Ok(())
}
