#!/usr/bin/env bash
# Starts a tunec entry script inside the SageMaker training container.
#
#   bash launch.sh SCRIPT CONFIG
#
# train.py runs under torchrun with one process per GPU and, on several instances, the multi-node
# rendezvous read from resourceconfig.json (the first host, sorted, is the master, as SageMaker's
# own torchrun driver does); merge.py and evaluate.py run as one process. requirements.txt is
# installed first, as the container's drivers would. Any failure is written to the failure file,
# whose first 1024 characters SageMaker reports as the job's FailureReason.
#
# TUNEC_LAUNCH_DRY_RUN=1 prints the command instead of running it (used by tests);
# TUNEC_SKIP_INSTALL=1 skips the pip install (local target, prepared environments).
set -euo pipefail

script="${1:?usage: launch.sh SCRIPT CONFIG}"
config="${2:?usage: launch.sh SCRIPT CONFIG}"
failure="${SM_OUTPUT_FAILURE:-${SM_OUTPUT_DIR:-/opt/ml/output}/failure}"
trap 'status=$?; mkdir -p "$(dirname "$failure")"; echo "tunec launch: \`$BASH_COMMAND\` exited with $status" > "$failure"' ERR
cd "$(dirname "$0")"

python="$(command -v python3 || command -v python)"
if [ "${TUNEC_SKIP_INSTALL:-0}" != "1" ] && [ "${TUNEC_LAUNCH_DRY_RUN:-0}" != "1" ]; then
  "$python" -m pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
fi

resource_config="${TUNEC_RESOURCE_CONFIG:-/opt/ml/input/config/resourceconfig.json}"
read -r nnodes rank master interface instance < <("$python" - "$resource_config" <<'PY'
import json, sys
try:
    rc = json.load(open(sys.argv[1]))
except OSError:
    rc = {}
hosts = sorted(rc.get("hosts") or ["algo-1"])
current = rc.get("current_host", hosts[0])
print(len(hosts), hosts.index(current) if current in hosts else 0, hosts[0],
      rc.get("network_interface_name", "eth0"), rc.get("current_instance_type", "local"))
PY
)

if [ -n "${SM_NUM_GPUS:-}" ]; then
  nproc="$SM_NUM_GPUS"
elif command -v nvidia-smi >/dev/null 2>&1; then
  nproc="$(nvidia-smi --list-gpus | wc -l)"
else
  nproc=1
fi
[ "$nproc" -ge 1 ] || nproc=1

case "$instance" in
  ml.p4d.*|ml.p4de.*|ml.p5.*|ml.p5e.*|ml.p5en.*|ml.trn1.*)
    export FI_PROVIDER=efa FI_EFA_USE_DEVICE_RDMA=1 RDMAV_FORK_SAFE=1 ;;
esac
export NCCL_SOCKET_IFNAME="$interface" NCCL_PROTO=simple

if [ "$script" = "train.py" ]; then
  command=(torchrun "--nnodes=$nnodes" "--nproc_per_node=$nproc")
  if [ "$nnodes" -gt 1 ]; then
    command+=("--master_addr=$master" "--master_port=7777" "--node_rank=$rank")
  fi
  command+=("$script" --config "$config")
else
  command=("$python" "$script" --config "$config")
fi

if [ "${TUNEC_LAUNCH_DRY_RUN:-0}" = "1" ]; then
  echo "${command[*]}"
  exit 0
fi
exec "${command[@]}"
