#!/usr/bin/env bash
# Generate Kino's demo media into media/demo/ from ffmpeg's built-in test
# sources (testsrc2, smptehdbars, mandelbrot, sine). Everything here is made by
# the Kino project and dedicated to the public domain (CC0 1.0), see
# media/demo/LICENSE.md.
#
# Idempotent: re-running overwrites the files. Deterministic as far as ffmpeg
# allows (bitexact flags, no metadata, single-threaded encoders).
#
# Usage: scripts/make-demo-media.sh [--verify-only]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/media/demo"
FFMPEG="${FFMPEG:-ffmpeg}"
FFPROBE="${FFPROBE:-ffprobe}"
DUR=30          # seconds per clip
FPS=30
GOP=60          # keyframe every 2 s
SIZE=640x360

mkdir -p "$OUT"

# Common flags: no metadata, bitexact muxing/encoding, no overwrite prompt.
COMMON=(-hide_banner -v error -y -nostdin)
BITEXACT=(-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -map_metadata -1 -map_chapters -1)

# --- timecode overlay (only if drawtext works on this ffmpeg) ---------------
FONT=""
for f in /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf \
         /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf; do
  if [[ -f "$f" ]]; then FONT="$f"; break; fi
done

drawtext_filter() { # $1 = label
  local font_opt=""
  [[ -n "$FONT" ]] && font_opt="fontfile=${FONT}:"
  printf "drawtext=%stext='%s':fontsize=22:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=6:x=(w-tw)/2:y=16," "$font_opt" "$1"
  printf "drawtext=%stimecode='00\\\\:00\\\\:00\\\\:00':rate=%s:fontsize=32:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=6:x=(w-tw)/2:y=h-th-20" "$font_opt" "$FPS"
}

OVERLAY=1
if ! "$FFMPEG" "${COMMON[@]}" -f lavfi -i "testsrc2=s=${SIZE}:r=${FPS}:d=0.1,$(drawtext_filter 'probe')" \
      -frames:v 1 -f null - >/dev/null 2>&1; then
  echo "note: drawtext unavailable, clips will have no timecode overlay" >&2
  OVERLAY=0
fi

video_src() { # $1 = lavfi source, $2 = label
  if [[ "$OVERLAY" == 1 ]]; then
    printf "%s,format=yuv420p,%s" "$1" "$(drawtext_filter "$2")"
  else
    printf "%s,format=yuv420p" "$1"
  fi
}

AUDIO_SRC="sine=frequency=440:beep_factor=4:sample_rate=48000:duration=${DUR}"
AUDIO_SRC2="sine=frequency=660:beep_factor=2:sample_rate=48000:duration=${DUR}"

X264=(-c:v libx264 -profile:v main -level 3.1 -pix_fmt yuv420p -preset medium
      -b:v 450k -maxrate 600k -bufsize 1200k -g "$GOP" -keyint_min "$GOP" -sc_threshold 0
      -threads 1 -x264-params "threads=1:lookahead-threads=1")
AAC=(-c:a aac -b:a 96k -ac 2 -ar 48000)
OPUS=(-c:a libopus -b:a 96k -ac 2 -ar 48000)
VP9=(-c:v libvpx-vp9 -pix_fmt yuv420p -b:v 450k -minrate 200k -maxrate 650k
     -g "$GOP" -keyint_min "$GOP" -deadline good -cpu-used 4 -row-mt 0 -threads 1
     -tile-columns 0)

gen() {
  local name="$1"; shift
  if [[ "${VERIFY_ONLY:-0}" == 1 ]]; then return 0; fi
  echo "generating $name" >&2
  local tmp="$OUT/.tmp.$name"
  "$FFMPEG" "${COMMON[@]}" "$@" "${BITEXACT[@]}" -t "$DUR" "$tmp"
  mv -f "$tmp" "$OUT/$name"
}

[[ "${1:-}" == "--verify-only" ]] && VERIFY_ONLY=1

# 1) faststart MP4: testsrc2, H.264 main + AAC, moov before mdat.
gen kino-testcard.mp4 \
  -f lavfi -i "$(video_src "testsrc2=s=${SIZE}:r=${FPS}:d=${DUR}" 'Kino test card - H.264/AAC faststart')" \
  -f lavfi -i "$AUDIO_SRC" \
  -map 0:v -map 1:a "${X264[@]}" "${AAC[@]}" -movflags +faststart -f mp4

# 2) MP4 with moov at the end: smptehdbars, H.264 main + AAC, no faststart.
gen kino-moov-at-end.mp4 \
  -f lavfi -i "$(video_src "smptehdbars=s=${SIZE}:r=${FPS}:d=${DUR}" 'Kino - moov at end')" \
  -f lavfi -i "$AUDIO_SRC2" \
  -map 0:v -map 1:a "${X264[@]}" "${AAC[@]}" -f mp4

# 3) WebM: mandelbrot, VP9 + Opus.
gen kino-testcard.webm \
  -f lavfi -i "$(video_src "mandelbrot=s=${SIZE}:r=${FPS}" 'Kino test card - VP9/Opus WebM')" \
  -f lavfi -i "$AUDIO_SRC" \
  -map 0:v -map 1:a "${VP9[@]}" "${OPUS[@]}" -f webm

# 4) Matroska: testsrc2, H.264 + Opus, Cues + SeekHead (ffmpeg defaults).
gen kino-testcard.mkv \
  -f lavfi -i "$(video_src "testsrc2=s=${SIZE}:r=${FPS}:d=${DUR}" 'Kino test card - H.264/Opus MKV')" \
  -f lavfi -i "$AUDIO_SRC2" \
  -map 0:v -map 1:a "${X264[@]}" "${OPUS[@]}" -f matroska

# 5) English subtitles: 10 cues of 3 s each covering 0-30 s.
if [[ "${VERIFY_ONLY:-0}" != 1 ]]; then
  {
    for i in $(seq 0 9); do
      s=$((i * 3)); e=$((s + 3))
      printf '%d\n00:00:%02d,000 --> 00:00:%02d,000\n' "$((i + 1))" "$s" "$e"
      if [[ $i -eq 0 ]]; then
        printf 'Kino test card \xe2\x80\x94 00:%02d\nWelcome to the Kino demo clip.\n\n' "$s"
      elif [[ $i -eq 9 ]]; then
        printf 'Kino test card \xe2\x80\x94 00:%02d\nEnd of the demo clip.\n\n' "$s"
      else
        printf 'Kino test card \xe2\x80\x94 00:%02d\nCue %d of 10.\n\n' "$s" "$((i + 1))"
      fi
    done
  } > "$OUT/kino-testcard.en.srt"

  cat > "$OUT/LICENSE.md" <<'EOF'
# Demo media license: CC0 1.0 Universal

The files in this directory

- `kino-testcard.mp4`
- `kino-moov-at-end.mp4`
- `kino-testcard.webm`
- `kino-testcard.mkv`
- `kino-testcard.en.srt`

were made by the Kino project. The video and audio clips are generated by
`scripts/make-demo-media.sh` purely from ffmpeg's built-in test sources
(`testsrc2`, `smptehdbars`, `mandelbrot` video and `sine` audio, with a
timecode drawn by ffmpeg's `drawtext` filter); the subtitle file is written by
the same script. No third-party footage, audio or text is included.

To the extent possible under law, the Kino project has waived all copyright and
related or neighboring rights to these files, dedicating them to the public
domain under the Creative Commons CC0 1.0 Universal Public Domain Dedication:
https://creativecommons.org/publicdomain/zero/1.0/

You can copy, modify, distribute and use them, even for commercial purposes,
all without asking permission.
EOF
fi

# --- verification -------------------------------------------------------------
fail=0
for f in kino-testcard.mp4 kino-moov-at-end.mp4 kino-testcard.webm kino-testcard.mkv; do
  p="$OUT/$f"
  if ! err="$("$FFMPEG" -hide_banner -v error -nostdin -i "$p" -f null - 2>&1)" || [[ -n "$err" ]]; then
    echo "FAIL decode $f: $err" >&2; fail=1
  fi
  d="$("$FFPROBE" -v error -show_entries format=duration -of default=nw=1:nk=1 "$p")"
  printf 'ok   %-22s %8d bytes  %ss\n' "$f" "$(stat -c %s "$p")" "$d" >&2
done
cues="$("$FFMPEG" -hide_banner -v error -nostdin -i "$OUT/kino-testcard.en.srt" -f srt - | grep -c -- '-->' || true)"
if [[ "$cues" -ne 10 ]]; then echo "FAIL srt: $cues cues parsed" >&2; fail=1; else echo "ok   kino-testcard.en.srt: $cues cues" >&2; fi

python3 - "$OUT" <<'PY' || fail=1
import struct, sys, os
out = sys.argv[1]

def mp4_top_boxes(path):
    boxes = []
    with open(path, "rb") as f:
        size_total = os.fstat(f.fileno()).st_size
        pos = 0
        for _ in range(10000):
            if pos >= size_total:
                break
            f.seek(pos)
            hdr = f.read(8)
            if len(hdr) < 8:
                break
            size, typ = struct.unpack(">I4s", hdr)
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
            elif size == 0:
                size = size_total - pos
            if size < 8:
                raise SystemExit(f"bad box at {pos} in {path}")
            boxes.append(typ.decode("latin1"))
            pos += size
    return boxes

ok = True
for name, want_first in (("kino-testcard.mp4", True), ("kino-moov-at-end.mp4", False)):
    b = mp4_top_boxes(os.path.join(out, name))
    first = b.index("moov") < b.index("mdat")
    status = "ok  " if first == want_first else "FAIL"
    ok &= first == want_first
    print(f"{status} {name}: top-level boxes {b}", file=sys.stderr)

def vint(buf, i, strip):
    b = buf[i]
    n = 1
    mask = 0x80
    while n <= 8 and not (b & mask):
        mask >>= 1
        n += 1
    v = b & (mask - 1) if strip else b
    for k in range(1, n):
        v = (v << 8) | buf[i + k]
    return v, n

def mkv_segment_children(path):
    data = open(path, "rb").read()
    i = 0
    # EBML header
    eid, n = vint(data, i, False); i += n
    sz, n = vint(data, i, True); i += n
    i += sz
    eid, n = vint(data, i, False); i += n
    assert eid == 0x18538067, "no Segment"
    sz, n = vint(data, i, True); i += n
    end = min(len(data), i + sz)
    names = {0x114D9B74: "SeekHead", 0x1549A966: "Info", 0x1654AE6B: "Tracks",
             0x1F43B675: "Cluster", 0x1C53BB6B: "Cues", 0x1254C367: "Tags",
             0x1043A770: "Chapters", 0xEC: "Void"}
    kids = []
    for _ in range(100000):
        if i >= end:
            break
        eid, n = vint(data, i, False); i += n
        sz, n = vint(data, i, True); i += n
        kids.append(names.get(eid, hex(eid)))
        i += sz
    return kids

for name in ("kino-testcard.mkv", "kino-testcard.webm"):
    kids = mkv_segment_children(os.path.join(out, name))
    has = "Cues" in kids and "SeekHead" in kids
    ok &= has
    summary = [k for j, k in enumerate(kids) if k != "Cluster" or (j and kids[j-1] != "Cluster")]
    print(f"{'ok  ' if has else 'FAIL'} {name}: segment children {summary} ({kids.count('Cluster')} clusters)", file=sys.stderr)

total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if not f.startswith("."))
print(f"{'ok  ' if total < 12 * 1024 * 1024 else 'FAIL'} total {total} bytes ({total / 1048576:.2f} MiB)", file=sys.stderr)
ok &= total < 12 * 1024 * 1024
sys.exit(0 if ok else 1)
PY

if [[ "$fail" != 0 ]]; then
  echo "verification FAILED" >&2
  exit 1
fi
echo "all demo media verified in $OUT" >&2
