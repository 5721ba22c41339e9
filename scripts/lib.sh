# Shared by docs/quickstart.sh and scripts/load-fault.sh (source it; it runs nothing itself).

# tls_material CA_NAME: in the current folder, a test CA (ca.pem, ca.key) and a leaf for
# localhost and 127.0.0.1 signed by it (fullchain.pem, privkey.pem), as docs/deploy.md shows.
tls_material() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=$1" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout privkey.pem -out leaf.csr 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' > leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile leaf.ext -out fullchain.pem 2>/dev/null
}

# tls_config PORT USER_TOKEN USECASE: writes sift.toml serving ./dataset for USECASE on
# 127.0.0.1:PORT over TLS (tls_material's files), state in ./state, one user tier with
# USER_TOKEN. Append further tables to sift.toml after it.
tls_config() {
  cat > sift.toml <<TOML
listen = "127.0.0.1:$1"
state_dir = "state"
[tls]
cert = "fullchain.pem"
key = "privkey.pem"
[[users]]
tier = "tier1"
tokens = ["$2"]
[[usecases]]
name = "$3"
dataset_dir = "dataset"
TOML
}

# wait_listening LOG TRIES: waits (0.1 s a try) until the server log LOG says it listens.
wait_listening() {
  for _ in $(seq 1 "$2"); do grep -q "listening on" "$1" && return; sleep 0.1; done
}
