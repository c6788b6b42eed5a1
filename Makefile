# EMPaCT Sync - build, test and demo.
#
#   make demo    install missing Debian packages, build, run a hub and two sites
#   make check   install missing Debian packages, build, run unit + e2e tests,
#                then the same suite again under ASan + UBSan (build-asan/)
#
# Internal targets (used by the two above): deps, all, unit, e2e, asan.

SHELL := /bin/bash
CC ?= gcc
BUILD ?= build
BIN ?= bin
SAN ?=

# Debian packages the build, the tests and the demo need.
DEB_PKGS := gcc make pkg-config libsqlite3-dev libgit2-dev libzstd-dev libssl-dev zlib1g-dev \
            libcjson-dev libbsd-dev libcsv-dev libcmocka-dev sqlite3 sqlite3-tools git openssl perl \
            ca-certificates clang libclang-rt-14-dev clang-format cppcheck chromium \
            zstd bc time util-linux libdeflate-dev
PKGS := sqlite3 libgit2 libzstd openssl libcjson libbsd zlib libdeflate

CFLAGS_WARN := -std=c17 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wvla
CPPFLAGS_ALL = -D_GNU_SOURCE -DSQLITE_ENABLE_SESSION -DSQLITE_ENABLE_PREUPDATE_HOOK \
               -iquote common -iquote server -iquote client -I$(BUILD) $(shell pkg-config --cflags $(PKGS))
OPT ?= -O2
SANFLAGS := -fsanitize=address -fsanitize=undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
# Test builds (build-test/, build-asan/) compile in the crash-injection points
# of common/testpoint.h; bin/ never does.
HOOKS ?=
CFLAGS_ALL = $(CFLAGS_WARN) $(OPT) -g $(if $(SAN),$(SANFLAGS)) $(if $(HOOKS),-DEMPACT_TEST_HOOKS) \
             $(CFLAGS)
LDLIBS_ALL = $(shell pkg-config --libs $(PKGS)) -lcsv -lpthread -lm
LDFLAGS_ALL = $(if $(SAN),$(SANFLAGS)) $(LDFLAGS)

COMMON_SRC := $(wildcard common/*.c)
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c))
CLIENT_SRC := $(filter-out client/main.c,$(wildcard client/*.c))
UNIT_SRC := $(wildcard tests/unit/test_*.c)

COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o) $(BUILD)/schema_sql.o
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
CLIENT_OBJ := $(CLIENT_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: demo check deps all unit e2e bench fuzz fuzz-regress clean format lint tidy
.DEFAULT_GOAL := all

all: $(BIN)/empact-hub $(BIN)/empact $(UNIT_BIN)

# ---- set-up: install what is missing, or say exactly how -------------------
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "missing Debian packages:$$missing"; \
	if [ "$$(id -u)" -ne 0 ]; then \
	    echo "run as root:  apt-get update && apt-get install -y$$missing"; exit 1; \
	fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing

demo: deps
	@$(MAKE) --no-print-directory all
	@bash tests/demo.sh $(BIN)

TEST_BUILD := BUILD=build-test BIN=build-test/bin HOOKS=1
ASAN_BUILD := BUILD=build-asan BIN=build-asan/bin SAN=1 HOOKS=1 OPT=-O1

check: deps
	@$(MAKE) --no-print-directory lint all
	@$(MAKE) --no-print-directory unit
	@bash tests/demo.sh $(BIN) > build/demo.log 2>&1 || { cat build/demo.log; exit 1; }
	@echo "demo on the release binaries: ok (log in build/demo.log)"
	@$(MAKE) --no-print-directory $(TEST_BUILD) build-test/bin/empact build-test/bin/empact-hub
	@$(MAKE) --no-print-directory $(TEST_BUILD) e2e
	@$(MAKE) --no-print-directory $(ASAN_BUILD) all
	@$(MAKE) --no-print-directory $(ASAN_BUILD) unit e2e
	@$(MAKE) --no-print-directory fuzz-regress
	@echo "make check: all suites passed (plain, ASan+UBSan, fuzz corpora)"

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

e2e: $(BIN)/empact-hub $(BIN)/empact
	EMPACT_BIN=$(abspath $(BIN)) prove -v tests/e2e/

# Every fuzz target over its seed corpus once (fast; part of make check).
fuzz-regress:
	bash tests/fuzz/run.sh regress

# Benchmarks against baselines measured in the same run (tests/bench/run.sh);
# results in bench/results/.  BENCH_QUICK=1 for a smoke run.
bench: deps
	@$(MAKE) --no-print-directory all
	bash tests/bench/run.sh $(BIN)

# Fuzz each target for FUZZ_SECONDS (default 60) with clang's libFuzzer.
FUZZ_SECONDS ?= 60
fuzz: deps
	bash tests/fuzz/run.sh run $(FUZZ_SECONDS)

# ---- build ----------------------------------------------------------------
$(BUILD)/schema_sql.c: schema/schema.sql
	@mkdir -p $(@D)
	@{ echo '/* generated from schema/schema.sql by the Makefile; do not edit */'; \
	   echo 'const char schema_sql_text[] ='; \
	   sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$$/\\n"/' $<; \
	   echo '    ;'; } > $@

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -MMD -MP -c -o $@ $<

$(BUILD)/libcommon.a: $(COMMON_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/libserver.a: $(SERVER_OBJ)
	$(AR) rcs $@ $^ $(if $(SERVER_OBJ),,)

$(BUILD)/libclient.a: $(CLIENT_OBJ)
	$(AR) rcs $@ $^

$(BIN)/empact-hub: $(BUILD)/server/main.o $(BUILD)/libserver.a $(BUILD)/libcommon.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BIN)/empact: $(BUILD)/client/main.o $(BUILD)/libclient.a $(BUILD)/libcommon.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libserver.a $(BUILD)/libclient.a $(BUILD)/libcommon.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) -lcmocka

clean:
	rm -rf build build-test build-asan bin

C_SOURCES = common/*.[ch] server/*.[ch] client/*.[ch] tests/unit/*.c tests/fuzz/*.c tests/bench/*.c

format:
	clang-format -i $(C_SOURCES)

# Formatting and static checks (part of make check).  `make tidy` adds
# clang-tidy's bugprone and analyzer checks, which are slower and advisory.
lint:
	clang-format --dry-run --Werror $(C_SOURCES)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
	    -D_GNU_SOURCE -I common -I server -I client --suppress=missingIncludeSystem \
	    common server client

tidy: $(BUILD)/schema_sql.c
	clang-tidy --quiet -checks='-*,bugprone-*,clang-analyzer-*,-bugprone-easily-swappable-parameters' \
	    common/*.c server/*.c client/*.c -- $(CPPFLAGS_ALL) -std=c17

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
