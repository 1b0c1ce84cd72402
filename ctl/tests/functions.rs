//! The executor's copy of Redis 7 functions from a migration's source master to its target
//! master (`RedisDrain::copy_functions_between`), against real redis-server 7 processes
//! (skipped when redis-server is not installed) and a server that does not know FUNCTION.

use std::io::{Read, Write};
use std::net::TcpListener;

use ctl::config::MigrationSettings;
use ctl::executor::RedisDrain;
use ctl::functions::Copied;
use testkit::{function_libraries as libraries, function_load};

/// A server that answers every request as one that predates Functions.
fn old_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let e = b"-ERR unknown command 'FUNCTION', with args beginning with: 'DUMP' \r\n";
                if s.write_all(e).is_err() {
                    break;
                }
            }
        }
    });
    addr
}

#[tokio::test]
async fn functions_copied_to_the_target_master() {
    let (Some((a, _da)), Some((b, _db))) = (testkit::redis_server(&[]), testkit::redis_server(&[]))
    else {
        return;
    };
    let (src, dst) = (
        format!("127.0.0.1:{}", a.port),
        format!("127.0.0.1:{}", b.port),
    );
    let drain = RedisDrain::new(MigrationSettings::default(), String::new());
    let (mut ca, mut cb) = (a.conn(), b.conn());

    // Nothing to copy: no RESTORE, nothing on the target.
    assert_eq!(
        drain.copy_functions_between(&src, &dst).await.unwrap(),
        Copied::Nothing
    );
    function_load(
        &mut ca,
        "#!lua name=lib1\nredis.register_function('f1', function() return 1 end)",
    );
    let copied = drain.copy_functions_between(&src, &dst).await.unwrap();
    assert!(
        matches!(copied, Copied::Libraries(n) if n > 10),
        "{copied:?}"
    );
    assert_eq!(libraries(&mut cb), ["lib1"]);
    let one: i64 = redis::cmd("FCALL").arg("f1").arg(0).query(&mut cb).unwrap();
    assert_eq!(one, 1);
    // Again (the next wave): REPLACE, and the target's own libraries stay.
    function_load(
        &mut cb,
        "#!lua name=own\nredis.register_function('g', function() return 2 end)",
    );
    drain.copy_functions_between(&src, &dst).await.unwrap();
    assert_eq!(libraries(&mut cb), ["lib1", "own"]);

    // A function name the target has in another library: the copy fails, with the reason.
    function_load(
        &mut ca,
        "#!lua name=lib2\nredis.register_function('g', function() return 3 end)",
    );
    let e = drain
        .copy_functions_between(&src, &dst)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&dst) && e.contains("cannot copy the functions") && e.contains("already exists"),
        "{e}"
    );

    // A server without FUNCTION on either side: nothing copied, no error.
    let old = old_server();
    assert_eq!(
        drain.copy_functions_between(&old, &dst).await.unwrap(),
        Copied::Unsupported
    );
    assert_eq!(
        drain.copy_functions_between(&src, &old).await.unwrap(),
        Copied::Unsupported
    );
}
