//! `spanstore demo` end to end on a small data set: the tour runs, every step prints,
//! and the planted PutItem anomaly comes out on top.

use std::process::Command;

#[test]
fn demo_tours_a_generated_data_set_and_finds_the_anomaly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_spanstore"))
        .args(["demo", "--spans", "300000", "--dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ingested 300,000 spans"), "{stdout}");
    for step in [
        "1. Traffic",
        "2. Is anything failing?",
        "3. When?",
        "4. Cold starts",
        "5. Which route",
        "6. One failed",
        "7. How",
    ] {
        assert!(stdout.contains(step), "missing step {step:?}:\n{stdout}");
    }
    // Step 2 ranks subnets by PutItem error rate: the anomaly subnet is the first row.
    let step2 = stdout.split("2. Is anything failing?").nth(1).unwrap();
    let first_row = step2.lines().nth(4).unwrap();
    assert!(first_row.contains(spanstore_workload::ANOMALY_SUBNET), "first row of step 2: {first_row}\n{stdout}");
    // The drill-down names the slow version first.
    let drill = stdout.split("Drill down").nth(1).unwrap();
    let first_version = drill.lines().nth(4).unwrap();
    assert!(first_version.trim_start().starts_with(spanstore_workload::SLOW_VERSION), "{drill}");
    assert!(stdout.contains("bitmap index on"), "{stdout}");
    assert!(stdout.contains(&format!("--data {} shell", data.display())), "{stdout}");
    // The data stays for the shell, and a second demo refuses to write into it.
    let again = Command::new(env!("CARGO_BIN_EXE_spanstore")).args(["demo", "--dir"]).arg(&data).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}
