//! A program built with `-C panic=abort` by `abort_isolation.rs`: runs
//! items of which every fifth panics through `run_isolated`, and prints
//! what came back. Arguments: workers, items, and how many panics to stop
//! after.
#[path = "../../src/isolate.rs"]
#[allow(dead_code)]
mod isolate;

fn main() {
    let arg = |n: usize| -> usize {
        std::env::args()
            .nth(n)
            .and_then(|a| a.parse().ok())
            .expect("arguments: workers items max-parked")
    };
    let (workers, items, max_parked) = (arg(1), arg(2), arg(3));
    let mut seen = 0;
    let run = isolate::run_isolated(
        0..items,
        workers,
        max_parked,
        |i: usize| {
            if i % 5 == 4 {
                panic!("item {i} panics");
            }
            i * 10
        },
        |_| seen += 1,
    );
    for (i, result) in run.results.iter().enumerate() {
        match result {
            Ok(value) => println!("{i} ok {value}"),
            Err(message) => println!("{i} panicked: {message}"),
        }
    }
    println!("stopped {}", run.stopped);
    println!("seen {seen}");
}
