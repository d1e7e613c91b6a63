# The probe-rows job as make targets with real file dependencies: after a failure,
# `make -f scripts/pipeline.mk` reruns only what is missing or stale, and each stage can be run
# alone (`make -f scripts/pipeline.mk split`).
#
#   make -f scripts/pipeline.mk INPUT=data/ OUT=out          # the whole job
#   make -f scripts/pipeline.mk INPUT=data/ OUT=out group    # one stage (and what it needs)
#   make -f scripts/pipeline.mk sample                       # generate sample/ with probe-gen
#
# Stages write under temporary names and rename on success, so a failed stage leaves no file
# that make would take as done.

INPUT        ?= sample
OUT          ?= out
RATIOS       ?= train=0.9,test=0.1
MAX_LEN      ?= 512
MIN_LEN      ?= 1
MAX_GAP      ?=
WORKERS      ?= 0
MEMORY_LIMIT ?=
ROWS         ?= 1M
PROBE_BIN    ?= $(if $(wildcard target/release/probe-group),target/release/,)

WORK   := $(OUT)/work
comma  := ,
SPLITS := $(foreach r,$(subst $(comma), ,$(RATIOS)),$(firstword $(subst =, ,$(r))))
# Every input file, so that a changed input reruns the job.
INPUT_FILES := $(shell find $(INPUT) -type f ! -name '.*' ! -name '_*' 2>/dev/null | sort)

.PHONY: all check group split batch merge sample clean
.DELETE_ON_ERROR:

all: merge

sample:
	$(PROBE_BIN)probe-gen --rows $(ROWS) --order sorted-per-file --files 4 --out-dir sample -q

# check-order's exit status says whether group needs --sort: 0 no, 1 yes, 2 error.
$(WORK)/order.mode: $(INPUT_FILES)
	@mkdir -p $(WORK)
	@rc=0; $(PROBE_BIN)probe-check-order -q $(INPUT) > $(WORK)/check-order.txt || rc=$$?; \
	cat $(WORK)/check-order.txt; \
	case $$rc in 0) echo "" > $@.tmp;; 1) echo "--sort $(if $(MEMORY_LIMIT),--memory-limit $(MEMORY_LIMIT)) --temp-dir $(WORK)" > $@.tmp;; \
	*) echo "probe-check-order failed (exit $$rc)" >&2; exit 1;; esac; mv $@.tmp $@
check: $(WORK)/order.mode

$(WORK)/grouped.arrows: $(WORK)/order.mode
	$(PROBE_BIN)probe-group $$(cat $(WORK)/order.mode) $(INPUT) -o $@
group: $(WORK)/grouped.arrows

# One run of probe-split writes every split; the stamp stands for all of them.
$(WORK)/split.done: $(WORK)/grouped.arrows
	$(PROBE_BIN)probe-split --ratios $(RATIOS) --out-dir $(WORK) $<
	@touch $@
$(foreach s,$(SPLITS),$(WORK)/$(s).arrows): $(WORK)/split.done
split: $(WORK)/split.done

$(WORK)/%-rows.arrows: $(WORK)/split.done
	$(PROBE_BIN)probe-batch $(WORK)/$*.arrows --max-len $(MAX_LEN) --min-len $(MIN_LEN) \
	    $(if $(MAX_GAP),--max-gap $(MAX_GAP)) --workers $(WORKERS) -o $@
batch: $(foreach s,$(SPLITS),$(WORK)/$(s)-rows.arrows)

$(OUT)/%/_manifest.json: $(WORK)/%-rows.arrows
	rm -rf $(OUT)/$*
	$(PROBE_BIN)probe-merge $< --out-dir $(OUT)/$*
merge: $(foreach s,$(SPLITS),$(OUT)/$(s)/_manifest.json)

clean:
	rm -rf $(OUT)
