//! The project's copy of madsim (`vendor/madsim`) enters a task's span
//! only when a subscriber records spans: with one, what a task logs still
//! names its node. A test binary of its own: tracing decides once per
//! call site, process-wide, whether anyone listens, and a test running
//! beside it without a subscriber could decide "no one" first.
#![cfg(madsim)]

use std::sync::Arc;
use std::time::Duration;

/// A log line's writer: every line goes to one shared buffer.
#[derive(Clone, Default)]
struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A task's span is entered only when a subscriber records spans; with one,
/// every line a task logs still names the node it runs on, and lines of
/// two nodes' tasks name their own.
#[test]
fn a_tasks_log_lines_name_its_node_when_a_subscriber_records_them() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let runtime = madsim::runtime::Runtime::with_seed_and_config(7, madsim::Config::default());
        runtime.block_on(async {
            let handle = madsim::runtime::Handle::current();
            for name in ["scribe", "copyist"] {
                let node = handle.create_node().name(name).build();
                node.spawn(async move {
                    // Two polls: the span is entered again after the sleep.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    tracing::info!("written on {name}");
                })
                .await
                .expect("the task runs to the end");
            }
        });
    });
    let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("UTF-8");
    for name in ["scribe", "copyist"] {
        let line = text
            .lines()
            .find(|line| line.contains(&format!("written on {name}")))
            .unwrap_or_else(|| panic!("no line from the task on {name} in {text:?}"));
        assert!(
            line.contains(&format!("name={name}")) || line.contains(&format!("name=\"{name}\"")),
            "the line does not name its node {name}: {line:?}"
        );
    }
}
