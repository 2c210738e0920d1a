#!/bin/sh
# Encode 60 s of synthetic stereo audio with oggenc; libvorbis/libvorbisenc do the work.
set -e
wav="${TMPDIR:-/tmp}/deepdeb-vorbis-bench.wav"
[ -s "$wav" ] || /usr/bin/python3 "$(dirname "$0")/tone.py" "$wav" 60
exec oggenc -Q -q 6 -o /dev/null "$wav"
