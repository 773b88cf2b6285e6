//! Rebuilds the crate when a file of the embedded web app changes (include_dir! alone does not
//! notice added or edited files).
fn main() {
    println!("cargo:rerun-if-changed=web");
    if let Ok(entries) = std::fs::read_dir("web") {
        for e in entries.flatten() {
            println!("cargo:rerun-if-changed={}", e.path().display());
        }
    }
}
