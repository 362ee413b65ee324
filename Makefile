# Builds ngx_http_sandbox_module (against Debian's nginx-dev by default, or
# any nginx source tree given as NGINX_SRC=...) and sandbox-syncd, and runs
# the test suite.  `make help` lists the targets.

SHELL       := /bin/bash
NGINX_SRC   ?= /usr/share/nginx/src
BUILD       := $(CURDIR)/build
NGX_BUILD   := $(BUILD)/nginx
MODULE      := $(BUILD)/ngx_http_sandbox_module.so
# extra ./configure flags for a non-Debian tree (Debian's come from conf_flags)
NGX_CONFIGURE_FLAGS ?= --with-compat --with-threads --with-http_ssl_module

MODULE_SRCS := config ngx_http_sandbox_module.c $(wildcard src/*.c src/*.h)

.PHONY: all module syncd deps test unit demo clean help

all: module syncd

help:
	@echo "make            build the module and sandbox-syncd into build/"
	@echo "make deps       install the Debian packages needed (root or sudo)"
	@echo "make test       deps + build + the whole test suite (prove)"
	@echo "make demo       deps + build + run the gateway locally"
	@echo "make NGINX_SRC=/path/to/nginx   build against another nginx tree"

deps:
	@scripts/install-deps.sh

module: $(MODULE)

# configure once per nginx tree; the copy keeps the source tree untouched
$(NGX_BUILD)/objs/Makefile: config
	rm -rf $(NGX_BUILD)
	mkdir -p $(BUILD)
	cp -a $(NGINX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && \
	  if [ -f conf_flags ]; then \
	    . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(CURDIR); \
	  else \
	    cfg=./configure; [ -x $$cfg ] || cfg=./auto/configure; \
	    $$cfg $(NGX_CONFIGURE_FLAGS) --add-dynamic-module=$(CURDIR); \
	  fi

$(MODULE): $(NGX_BUILD)/objs/Makefile $(MODULE_SRCS)
	$(MAKE) -C $(NGX_BUILD) -f objs/Makefile modules
	install -m 755 $(NGX_BUILD)/objs/ngx_http_sandbox_module.so $@

syncd:
	@if [ -f src/syncd/Makefile ]; then $(MAKE) -C src/syncd; fi

test: deps all
	@if [ -x t/k8s/build-apiserver.sh ]; then t/k8s/build-apiserver.sh; fi
	prove -I t/lib -r t/

unit:
	prove -I t/lib t/unit.t

demo: deps all
	scripts/demo.sh

clean:
	rm -rf $(BUILD)
