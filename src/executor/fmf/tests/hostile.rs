//! Hostile names: results and files never leave the artifacts directory.

use super::support::*;

#[tokio::test]
async fn hostile_names_stay_inside_files() {
    let mut s = res("{\"name\": \"../../up\", \"files\": [{\"name\": \"../../x\", \"length\": 1}, {\"name\": \"/etc/passwd\", \"length\": 1}, {\"name\": \"a\\nb\", \"length\": 1}]}").into_bytes();
    s.extend_from_slice(b"123exitcode 0\n");
    let run = run_stream(&s).await;
    assert_eq!(
        run.results(),
        "{\"name\": \"../../up\", \"files\": [\"../../x\", \"/etc/passwd\", \"a\\nb\"]}\n{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(
        run.files(),
        ["output.txt", "up/a_b", "up/etc/passwd", "up/x"]
    );
    let parent = run.dir.parent().expect("parent");
    assert_eq!(
        std::fs::read_dir(parent).expect("ls").count(),
        1,
        "nothing beside artifacts/"
    );
}

#[tokio::test]
async fn nul_and_empty_names_are_refused_and_the_run_goes_on() {
    let mut s = res("{\"status\": \"pass\", \"name\": \"t\", \"files\": [{\"name\": \"ok\", \"length\": 2}, {\"name\": \"bad\\u0000name\", \"length\": 3}, {\"name\": \"..\", \"length\": 1}]}").into_bytes();
    s.extend_from_slice(b"okXXXY");
    s.extend(res("{\"status\": \"pass\"}").into_bytes());
    s.extend_from_slice(b"exitcode 0\n");
    let run = run_stream(&s).await;
    assert_eq!(run.error, None);
    assert_eq!(
        run.results(),
        "{\"status\": \"error\", \"name\": \"t\", \"files\": [\"ok\"], \"note\": \"refused to store uploaded files: 'bad\\u0000name' (the file name contains a NUL byte), '..' (the file name is empty once normalised)\"}\n{\"status\": \"pass\"}\n"
    );
    assert_eq!(run.files(), ["t/ok"]);
    assert_eq!(run.file("t/ok"), b"ok");
}

#[tokio::test]
async fn planted_symlinks_are_never_followed() {
    let tmp_outside = tempfile::tempdir().expect("tempdir");
    let outside = tmp_outside.path().to_path_buf();
    std::fs::write(outside.join("victim"), b"precious").expect("write");
    let target_dir = outside.clone();
    let mut s =
        res("{\"name\": \"evil\", \"files\": [{\"name\": \"x\", \"length\": 3}]}").into_bytes();
    s.extend_from_slice(b"AAA");
    s.extend(res("{\"files\": [{\"name\": \"victim\", \"length\": 3}, {\"name\": \"deep/evil/x\", \"length\": 3}, {\"name\": \"fine\", \"length\": 1}]}").into_bytes());
    s.extend_from_slice(b"BBBCCCD");
    s.extend_from_slice(b"exitcode 0\n");
    let run = run_stream_with(&s, move |dir| {
        let files = dir.join("files");
        std::os::unix::fs::symlink(&target_dir, files.join("evil")).expect("symlink");
        std::os::unix::fs::symlink(target_dir.join("victim"), files.join("victim"))
            .expect("symlink");
        std::fs::create_dir(files.join("deep")).expect("mkdir");
        std::os::unix::fs::symlink(&target_dir, files.join("deep/evil")).expect("symlink");
    })
    .await;
    assert_eq!(run.error, None);
    let results = run.results();
    let lines: Vec<&str> = results.lines().collect();
    assert_eq!(lines.len(), 2, "{results}");
    assert_eq!(
        lines[0],
        "{\"name\": \"evil\", \"files\": [], \"status\": \"error\", \"note\": \"refused to store uploaded files: 'x' ('evil' is a symbolic link or not a directory)\"}"
    );
    assert_eq!(
        lines[1],
        "{\"files\": [\"fine\"], \"status\": \"error\", \"note\": \"refused to store uploaded files: 'victim' ('victim' is a symbolic link), 'deep/evil/x' ('deep/evil' is a symbolic link or not a directory)\"}"
    );
    assert_eq!(
        std::fs::read(outside.join("victim")).expect("victim"),
        b"precious"
    );
    assert_eq!(
        std::fs::read_dir(&outside).expect("ls").count(),
        1,
        "nothing written outside"
    );
    assert_eq!(run.file("fine"), b"D");
}

#[tokio::test]
async fn file_then_directory_collision_is_refused() {
    let mut s =
        res("{\"files\": [{\"name\": \"a\", \"length\": 1}, {\"name\": \"a/b\", \"length\": 1}]}")
            .into_bytes();
    s.extend_from_slice(b"12exitcode 0\n");
    let run = run_stream(&s).await;
    assert!(run.results().starts_with("{\"files\": [\"a\"], \"status\": \"error\", \"note\": \"refused to store uploaded files: 'a/b' ('a' is a symbolic link or not a directory)\"}"), "{}", run.results());
    assert_eq!(run.file("a"), b"1");
}
