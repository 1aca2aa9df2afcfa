//! The event store's group commit and the relay's wake-up, against the real PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use reqwest::StatusCode;
use serde_json::json;
use shared::event_store::append_together;
use sqlx::postgres::PgListener;

use crate::helpers::*;

fn event(aggregate_id: &str, sequence: usize) -> SerializedEvent {
    SerializedEvent::new(
        aggregate_id.to_string(),
        sequence,
        "test_thing".to_string(),
        "ThingHappened".to_string(),
        "1.0".to_string(),
        json!({"ThingHappened": {"n": sequence}}),
        json!({"source": "test"}),
    )
}

#[tokio::test]
async fn commands_appended_together_keep_their_own_atomicity_and_conflicts() {
    let app = TestApp::spawn().await;

    // Three commands that do not conflict: one statement, all committed.
    let results = append_together(
        &app.pool,
        &[("test_thing", vec![event("a", 1), event("a", 2)]), ("test_thing", vec![event("b", 1)])],
    )
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    // A batch where one command lost its race (b/1 exists) and two others meet on c/1: the others
    // still commit, exactly one of the c/1 commands wins, and the losers write nothing at all
    // (not even their later events).
    let results = append_together(
        &app.pool,
        &[
            ("test_thing", vec![event("b", 1), event("b", 2)]),
            ("test_thing", vec![event("c", 1)]),
            ("test_thing", vec![event("a", 3)]),
            ("test_thing", vec![event("c", 1), event("c", 2)]),
        ],
    )
    .await;
    let conflict = |r: &Result<(), PersistenceError>| matches!(r, Err(PersistenceError::OptimisticLockError));
    assert!(conflict(&results[0]), "{results:?}");
    assert!(results[2].is_ok(), "{results:?}");
    assert!(results[1].is_ok() != results[3].is_ok(), "exactly one c/1 wins: {results:?}");
    assert!(conflict(if results[1].is_ok() { &results[3] } else { &results[1] }));

    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, sequence FROM events WHERE aggregate_type = 'test_thing' ORDER BY aggregate_id, sequence",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut expected = vec![("a".into(), 1), ("a".into(), 2), ("a".into(), 3), ("b".into(), 1), ("c".into(), 1)];
    if results[3].is_ok() {
        expected.push(("c".into(), 2));
    }
    assert_eq!(rows, expected);
    // every committed event reaches JetStream once
    app.wait_for("all published", || async { app.count("event_outbox").await == 0 }).await;
    assert_eq!(app.stream_messages(&app.names.es_filter(Some("test_thing"), None)).await.len(), expected.len());
    app.stop().await;
}

#[tokio::test]
async fn concurrent_duplicate_callbacks_of_many_files_make_one_file_each() {
    let app = Arc::new(TestApp::spawn().await);
    let token = app.pilot_token().await;
    // 100 files, each reported twice at the same moment: the appends are grouped, and groups
    // contain both reports of a file.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(
            async move { app.upload_callback(&token, callback_body(&format!("dup-{}", i / 2))).await },
        ));
    }
    for t in tasks {
        let (status, r) = t.await.unwrap();
        assert_eq!((status, r["code"].clone()), (StatusCode::OK, json!(0)), "{r}");
    }
    let (events, max_seq): (i64, i64) =
        sqlx::query_as("SELECT count(*), max(sequence) FROM events WHERE aggregate_type = 'media_file'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((events, max_seq), (100, 1));
    app.wait_for("files listed", || async { app.count("rm_media_files").await == 100 }).await;
    assert_eq!(app.stream_messages(&app.names.es_filter(Some("media_file"), None)).await.len(), 100);
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test]
async fn a_sleeping_relay_is_woken_by_the_next_event() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let sleeping = || async {
        sqlx::query_scalar::<_, i64>("SELECT last_value FROM relay_sleeping").fetch_one(&app.pool).await.unwrap() == 1
    };
    app.wait_for("the relay to fall asleep on an empty outbox", sleeping).await;

    let mut listener = PgListener::connect(&app.config.database_url).await.unwrap();
    listener.listen(projectors::relay::CHANNEL).await.unwrap();
    let (_, r) = app.upload_callback(&token, callback_body("wake-up")).await;
    assert_eq!(r["code"], 0);
    let woken = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await;
    assert!(matches!(woken, Ok(Ok(_))), "the event store notified the relay: {woken:?}");
    app.wait_for("file listed", || async { app.count("rm_media_files").await == 1 }).await;

    // Busy again, then asleep again once the outbox is drained.
    app.wait_for("the relay to fall asleep again", sleeping).await;
    assert_eq!(app.count("event_outbox").await, 0);
    app.stop().await;
}
