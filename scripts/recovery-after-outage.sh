#!/usr/bin/env bash
# How long after a bank comes back does it hear the decisions it missed? Starts `paynet up --no-restart` in a
# temp dir, kills bank HDFC, makes one payment to it (aborted: its abort must still reach HDFC), waits DOWN_S
# seconds, starts HDFC again on its port, and times from its "listening" line until the gateway reports no
# payment aborting. The polling (one `paynet status --json` process each time) adds up to about 1 s.
# usage: scripts/recovery-after-outage.sh DIST_CLI DOWN_S     e.g. scripts/recovery-after-outage.sh dist/paynet.js 12
set -u
CLI=$(realpath "$1")
DOWN_S=$2
DIR=$(mktemp -d /tmp/paynet-recovery.XXXX)
cd "$DIR"
node "$CLI" up --no-restart --port 0 --bank-port 0 >up.log 2>&1 &
UP_PID=$!
for _ in $(seq 1 240); do grep -q '"msg":"ready' up.log && break; sleep 0.25; done
PORT=$(grep -o 'HDFC 127.0.0.1:[0-9]*' up.log | tail -1 | cut -d: -f2)
BANK_PID=$(grep -o '"role":"bank HDFC","pid":[0-9]*' up.log | head -1 | grep -o '[0-9]*$')
kill -9 "$BANK_PID"
PAYNET_PASSWORD=alice123 node "$CLI" client pay --user alice --bank SBI --to bob --to-bank HDFC --amount 1 >/dev/null
sleep "$DOWN_S"
node "$CLI" bank --id HDFC --port "$PORT" >bank.log 2>&1 &
BANK2_PID=$!
for _ in $(seq 1 400); do grep -q listening bank.log && break; sleep 0.05; done
START_NS=$(date +%s%N)
aborting="?"
for _ in $(seq 1 2000); do
  aborting=$(node "$CLI" status --json 2>/dev/null | node -e \
    'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>console.log(JSON.parse(s).payments?.aborting ?? "?"))')
  [ "$aborting" = "0" ] && break
  sleep 0.1
done
END_NS=$(date +%s%N)
echo "down ${DOWN_S} s: the abort reached the bank $(((END_NS - START_NS) / 1000000)) ms after it listened (aborting $aborting)"
kill "$BANK2_PID"
kill -INT "$UP_PID"
wait 2>/dev/null
cd / && rm -rf "$DIR"
