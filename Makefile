# barlow build. `make` builds build/libbarlow.a and build/barlow; `make test` builds and runs
# every tests/test_*.c (each its own program) through tests/run.sh.
# Variables: CC (gcc|clang), SAN=1 (ASan+UBSan build into build-san/), OPT (default -O3 -march=native).
CC      ?= gcc
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     ?= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
BUILD   ?= build
OPT     ?= -O3 -march=native -g
LDSAN   :=
endif
BLASDIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fopenmp $(OPT) -Iinclude -Isrc -I/usr/include/x86_64-linux-gnu/openblas-openmp -I/usr/include/cjson
LDLIBS  := -L$(BLASDIR) -Wl,-rpath,$(BLASDIR) -lopenblas -lcjson -lturbojpeg -lpng -lz -lm -lpthread
LDFLAGS := -fopenmp $(LDSAN)

LIB_SRC := $(sort $(wildcard src/core/*.c src/ops/*.c src/nn/*.c src/train/*.c src/io/*.c src/data/*.c))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

all: $(BUILD)/libbarlow.a $(BUILD)/barlow

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libbarlow.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(BUILD)/barlow: $(CLI_OBJ) $(BUILD)/libbarlow.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libbarlow.a $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/obj/tests/testutil.o $(BUILD)/libbarlow.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/obj/tests/testutil.o $(BUILD)/libbarlow.a $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BUILD)/libbarlow.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libbarlow.a $(LDLIBS)

tests: $(TEST_BIN) $(BUILD)/barlow
bench: $(BENCH_BIN) $(BUILD)/barlow

# Runs every test program (optionally a subset: make test T='conv bn').
test: tests
	BUILD=$(BUILD) bash tests/run.sh $(T)

clean:
	rm -rf build build-san

.PHONY: all tests test bench clean
.SECONDARY:
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
