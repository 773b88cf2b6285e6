//! Runs `kino-bench smoke` (Kino and libtorrent, tiny sizes; startup, playback, seek, several
//! slow seeders and the real film once, in network namespaces). Needs root and iproute2: without them it fails with a message saying so, rather
//! than skipping silently.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[test]
fn smoke_kino_and_libtorrent() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run id: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("kino-bench's smoke test needs root (it creates network namespaces, veth pairs and tc qdiscs); run the tests as root".into());
    }
    if Command::new("ip").arg("-V").output().is_err()
        || Command::new("tc").arg("-V").output().is_err()
    {
        return Err("kino-bench's smoke test needs iproute2 (`ip`, `tc`): scripts/install-test-deps installs it".into());
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let kino = match std::env::var_os("KINO_BIN") {
        Some(k) => PathBuf::from(k),
        None => {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "-q", "-p", "kino"])
                .current_dir(&repo)
                .status()
                .map_err(|e| format!("cannot run cargo build -p kino: {e}"))?;
            if !st.success() {
                return Err("cargo build -p kino failed".into());
            }
            // Next to this test's own target folder (honours CARGO_TARGET_DIR):
            // <target>/debug/deps/smoke-<hash> -> <target>/debug/kino.
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent()?.parent().map(|d| d.join("kino")))
                .unwrap_or_else(|| repo.join("target/debug/kino"))
        }
    };
    let out = std::env::temp_dir().join(format!("kino-bench-smoke-{}", std::process::id()));
    let started = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_kino-bench"))
        .arg("smoke")
        .arg("--kino")
        .arg(&kino)
        .arg("--out")
        .arg(&out)
        .output()
        .map_err(|e| format!("cannot run kino-bench: {e}"))?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let table = std::fs::read_to_string(out.join("results.md")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&out);
    if !run.status.success() {
        return Err(format!(
            "kino-bench smoke failed ({}):\n{stdout}\n{stderr}",
            run.status
        ));
    }
    if !table.contains("| startup (10 s readable) |") || !table.contains("libtorrent") {
        return Err(format!("no results table:\n{stdout}"));
    }
    // The several-seeders scenario ran too: both clients were given both seeders and measured.
    let mesh = table
        .split("### Several slow seeders far away")
        .nth(1)
        .ok_or_else(|| format!("no table of the several-seeders scenario:\n{table}"))?;
    if !mesh.contains("| startup (10 s readable) |") || !mesh.contains("| seek to 60%: to play |") {
        return Err(format!(
            "the several-seeders table has no figures:\n{table}"
        ));
    }
    // The real-film scenario ran too: mpv played Kino's stream of the ffmpeg-made film and seeked in it.
    let film = table
        .split("### A real film in mpv")
        .nth(1)
        .ok_or_else(|| format!("no table of the real-film scenario:\n{table}"))?;
    let kino_cell = |row: &str| {
        film.lines()
            .find(|l| l.starts_with(row))
            .and_then(|l| l.split('|').nth(2).map(|c| c.trim().to_owned()))
    };
    for row in ["| mpv playing |", "| seek to 60%: to play |"] {
        match kino_cell(row) {
            Some(c) if c.ends_with(" s") => {}
            other => return Err(format!("no Kino figure in {row} ({other:?}):\n{table}")),
        }
    }
    eprintln!("kino-bench smoke took {elapsed:?}");
    // Nothing left behind: no namespace of this run remains.
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(|e| e.to_string())?;
    let left: Vec<String> = String::from_utf8_lossy(&ns.stdout)
        .lines()
        .filter(|l| l.starts_with("kb"))
        .map(str::to_owned)
        .collect();
    // (A namespace whose bench process still runs belongs to another, concurrent run.)
    let dead: Vec<&String> = left
        .iter()
        .filter(|l| {
            let pid: String = l[2..].chars().take_while(char::is_ascii_digit).collect();
            !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
        .collect();
    if !dead.is_empty() {
        return Err(format!("namespaces left behind: {dead:?}"));
    }
    Ok(())
}
