# The probe-rows job as make targets with real file dependencies: after a failure,
# `make -f scripts/pipeline.mk` reruns only what is missing or stale, and each stage can be run
# alone (`make -f scripts/pipeline.mk split`).
#
#   make -f scripts/pipeline.mk INPUT=data/ OUT=out          # the whole job
#   make -f scripts/pipeline.mk INPUT=data/ OUT=out group    # one stage (and what it needs)
#   make -f scripts/pipeline.mk INPUT=data/ MAX_LEN=64       # reruns batch and merge only
#   make -f scripts/pipeline.mk sample                       # generate sample/ with probe-gen
#   make -f scripts/pipeline.mk INPUT=shuffle/bucket-3 OUT=out BUCKET=3   # one bucket (below)
#
# BUCKET=I: the input is bucket I of a probe-partition run; results go to OUT/<split>/bucket-I/
# and the files between stages to OUT/work/bucket-I/, so every bucket runs into one OUT.
#
# Settings are inputs too: each stage's settings are written to OUT/work/.settings/<stage>,
# rewritten only when their text changes (as the Makefile is read), and the stage's outputs depend on that file. So a
# changed setting reruns exactly the stages whose output it changes (RATIOS or SEED: split,
# batch and merge; MAX_LEN: batch and merge; COMPRESSION: merge), and an unchanged one reruns
# nothing (`make -n` records the settings it was given too, so the next run rebuilds what they
# do not match). THREADS, WORKERS and MEMORY_LIMIT change how a stage runs, not what it
# writes: not stamped.
#
# Stages write under temporary names and rename on success, so a failed stage leaves no file
# that make would take as done.
#
# Files kept: a file between every two stages, OUT/work/grouped.arrows, OUT/work/<split>.arrows
# and OUT/work/<split>-rows.arrows (zstd-compressed Arrow IPC), because each is the point a rerun
# starts from: a changed MAX_LEN reruns batch from the split files, a changed COMPRESSION merge
# from the training rows, without grouping again. That costs disk (about twice the input's
# Parquet bytes for the grouped and split files each, more for the rows); scripts/pipeline.sh
# pipes group | split and batch | merge instead and keeps only the split files, while it runs.
# `make -f scripts/pipeline.mk tidy` removes OUT/work/ once the results are final.

INPUT          ?= sample
OUT            ?= out
# Columns (every stage): the key (comma-separated for a composite key) and the time column.
KEY            ?= src_addr
TIME           ?= event_time
# probe-group: payload columns to keep (comma-separated; empty = all), --sort's memory.
PAYLOAD_COLUMNS ?=
MEMORY_LIMIT   ?=
# probe-split
RATIOS         ?= train=0.9,test=0.1
SEED           ?= 0
# probe-batch (DELTA_TIME=1 adds the dt column; TIME_UNIT for integer times: s, ms, us, ns)
MIN_LEN        ?= 1
MAX_LEN        ?= 512
STRIDE         ?=
MAX_GAP        ?=
DELTA_TIME     ?=
TIME_UNIT      ?=
# --threads of every stage (0 = all cores); WORKERS: probe-batch's alone.
THREADS        ?= 0
WORKERS        ?= $(THREADS)
# probe-merge
MAX_FILE_SIZE  ?= 1GiB
ROW_GROUP_SIZE ?= 64MiB
COMPRESSION    ?= zstd
ROWS           ?= 1M
# One bucket of a partitioned run (README "More than one machine"); empty: the whole input.
BUCKET         ?=
PROBE_BIN      ?= $(if $(wildcard target/release/probe-group),target/release/,)

# make decides what to rerun by file timestamps, which a store's objects do not give it: local
# paths only. scripts/pipeline.sh takes URLs (README "Object storage (URLs)").
URL_SCHEMES := s3 s3a gs az adl azure abfs abfss http https
ifneq ($(strip $(foreach u,$(URL_SCHEMES),$(filter $(u)://%,$(INPUT) $(OUT)))),)
$(error INPUT and OUT must be local paths (make needs file timestamps); for URLs run scripts/pipeline.sh INPUT OUTDIR)
endif

WORK     := $(OUT)/work$(if $(BUCKET),/bucket-$(BUCKET))
# Split S's result folder is OUT/S, or OUT/S/bucket-I for one bucket.
RESULT   := $(if $(BUCKET),/bucket-$(BUCKET))
SETTINGS := $(WORK)/.settings
comma    := ,
SPLITS   := $(foreach r,$(subst $(comma), ,$(RATIOS)),$(firstword $(subst =, ,$(r))))
SPLIT_FILES := $(foreach s,$(SPLITS),$(WORK)/$(s).arrows)
# make takes a space as a list separator: such a path would be read as two.
ifneq ($(words $(INPUT) $(OUT)),2)
$(error INPUT and OUT must each be one path without spaces (make splits on them); rename the folder, or run scripts/pipeline.sh, which takes any path)
endif
# Every input file (through symlinks, as the stages read them), so that a changed input reruns
# the job; and the list with sizes and times as a stamp (below), so that a removed file, or one
# added with an older time (cp -p, rsync -a, mv), reruns it too.
INPUT_FILES := $(shell find -L $(INPUT) -type f ! -name '.*' ! -name '_*' 2>/dev/null | sort)
INPUT_LIST  := $(shell find -L $(INPUT) -type f ! -name '.*' ! -name '_*' -printf '%p %s %T@\n' 2>/dev/null | sort)

# The options of each stage that shape its output, one line each: the stamps' contents.
COLUMN_OPTS := --key $(KEY) --time $(TIME)
CHECK_OPTS  := $(INPUT) $(COLUMN_OPTS)
GROUP_OPTS  := $(strip $(COLUMN_OPTS) $(if $(PAYLOAD_COLUMNS),--columns $(PAYLOAD_COLUMNS)))
SPLIT_OPTS  := --key $(KEY) --ratios $(RATIOS) --seed $(SEED)
BATCH_OPTS  := $(strip $(COLUMN_OPTS) --min-len $(MIN_LEN) --max-len $(MAX_LEN) $(if $(STRIDE),--stride $(STRIDE)) \
               $(if $(MAX_GAP),--max-gap $(MAX_GAP)) $(if $(DELTA_TIME),--delta-time) \
               $(if $(TIME_UNIT),--time-unit $(TIME_UNIT)))
MERGE_OPTS  := --max-file-size $(MAX_FILE_SIZE) --row-group-size $(ROW_GROUP_SIZE) --compression $(COMPRESSION)

.PHONY: all check group split batch merge sample clean tidy
.DELETE_ON_ERROR:

all: merge

sample:
	$(PROBE_BIN)probe-gen --rows $(ROWS) --order sorted-per-file --files 4 --out-dir sample -q

# $(SETTINGS)/<stage> holds the stage's options. It is written as the Makefile is read (so
# `make -n` plans with it too), and only when its text changed: its timestamp moves, and what
# depends on it reruns, exactly then.
stamp = $(shell mkdir -p $(SETTINGS) && printf '%s\n' '$(strip $(2))' > $(SETTINGS)/$(1).new && \
    if cmp -s $(SETTINGS)/$(1).new $(SETTINGS)/$(1); then rm -f $(SETTINGS)/$(1).new; \
    else mv $(SETTINGS)/$(1).new $(SETTINGS)/$(1); fi)
ifeq ($(filter clean sample tidy,$(MAKECMDGOALS)),)
# A result of an earlier run with other split names would sit beside this run's, and a reader of
# OUT/*/ would get its keys twice: refused before any work.
STALE := $(filter-out $(SPLITS),$(notdir $(patsubst %/,%,$(dir $(wildcard $(OUT)/*/_manifest.json $(OUT)/*/bucket-*/_manifest.json)))) \
    $(notdir $(patsubst %/,%,$(dir $(patsubst %/,%,$(dir $(wildcard $(OUT)/*/bucket-*/_manifest.json)))))))
STALE := $(filter-out bucket-%,$(STALE))
ifneq ($(STALE),)
$(error $(OUT) holds results of splits this run does not write ($(STALE); RATIOS is $(RATIOS)): remove them (rm -r $(addprefix $(OUT)/,$(STALE))) or choose another OUT, or a reader of $(OUT)/*/ would get their keys twice)
endif
$(call stamp,inputs,$(INPUT_LIST))
$(call stamp,check,$(CHECK_OPTS))
$(call stamp,group,$(GROUP_OPTS))
$(call stamp,split,$(SPLIT_OPTS))
$(call stamp,batch,$(BATCH_OPTS))
$(call stamp,merge,$(MERGE_OPTS))
endif

# check-order's exit status says whether group needs --sort: 0 no, 1 yes, 2 error.
$(WORK)/order.mode: $(INPUT_FILES) $(SETTINGS)/inputs $(SETTINGS)/check
	@rc=0; $(PROBE_BIN)probe-check-order -q --threads $(THREADS) $(CHECK_OPTS) > $(WORK)/check-order.txt || rc=$$?; \
	cat $(WORK)/check-order.txt; \
	case $$rc in 0) echo "" > $@.tmp;; 1) echo "--sort" > $@.tmp;; \
	*) echo "probe-check-order failed (exit $$rc)" >&2; exit 1;; esac; mv $@.tmp $@
check: $(WORK)/order.mode

$(WORK)/grouped.arrows: $(WORK)/order.mode $(INPUT_FILES) $(SETTINGS)/inputs $(SETTINGS)/group
	$(PROBE_BIN)probe-group $$(cat $(WORK)/order.mode) \
	    $$(grep -q sort $(WORK)/order.mode && echo "$(if $(MEMORY_LIMIT),--memory-limit $(MEMORY_LIMIT)) --temp-dir $(WORK)") \
	    $(GROUP_OPTS) --threads $(THREADS) $(INPUT) -o $@
group: $(WORK)/grouped.arrows

# One run of probe-split writes every split file (a grouped target: one recipe, all files);
# they appear together when all are complete. A staging folder a killed run left is removed.
# probe-split writes them into $(WORK)/.split-new first: a split file whose bytes are the same as
# before (split is deterministic) is left as it was, with its time, so removing one split file
# reruns batch and merge of that split only.
$(SPLIT_FILES) &: $(WORK)/grouped.arrows $(SETTINGS)/split
	rm -rf $(WORK)/.probe-staging-* $(WORK)/.split-new
	$(PROBE_BIN)probe-split $(SPLIT_OPTS) --threads $(THREADS) --out-dir $(WORK)/.split-new $<
	for f in $(SPLIT_FILES); do n=$(WORK)/.split-new/$$(basename $$f); \
	    if cmp -s $$n $$f; then rm $$n; else mv $$n $$f; fi || exit 1; done; rmdir $(WORK)/.split-new
split: $(SPLIT_FILES)

$(WORK)/%-rows.arrows: $(WORK)/%.arrows $(SETTINGS)/batch
	$(PROBE_BIN)probe-batch $< $(BATCH_OPTS) --threads $(WORKERS) -o $@
batch: $(foreach s,$(SPLITS),$(WORK)/$(s)-rows.arrows)

# probe-merge builds OUT/<split> as a hidden folder and renames it into place when complete;
# the previous result and any staging folder a killed run left are removed first.
$(OUT)/%$(RESULT)/_manifest.json: $(WORK)/%-rows.arrows $(SETTINGS)/merge
	d=$(OUT)/$*$(RESULT); rm -rf $$d $$(dirname $$d)/.$$(basename $$d).probe-staging-*
	$(PROBE_BIN)probe-merge $< $(MERGE_OPTS) --threads $(THREADS) --out-dir $(OUT)/$*$(RESULT)
merge: $(foreach s,$(SPLITS),$(OUT)/$(s)$(RESULT)/_manifest.json)

clean:
	rm -rf $(OUT)

tidy:
	rm -rf $(WORK)
