# Builds ngx_http_sandbox_module (against Debian's nginx-dev by default, or
# any nginx source tree given as NGINX_SRC=...) and sandbox-syncd, and runs
# the test suite.  `make help` lists the targets.

SHELL       := /bin/bash
NGINX_SRC   ?= /usr/share/nginx/src
BUILD       := $(CURDIR)/build
# one configured copy per nginx tree
NGX_BUILD   := $(BUILD)/nginx$(subst /,_,$(NGINX_SRC))
MODULE      := $(BUILD)/ngx_http_sandbox_module.so
# extra ./configure flags for a non-Debian tree (Debian's come from conf_flags)
NGX_CONFIGURE_FLAGS ?= --with-compat --with-threads --with-http_ssl_module

MODULE_SRCS := config ngx_http_sandbox_module.c $(wildcard src/*.c src/*.h)

.PHONY: all module admin syncd agent deps test test-asan unit fuzz demo \
        clean help kube-apiserver deb image

ADMIN       := $(BUILD)/sandbox-admin
CFLAGS_TOOLS ?= -O2 -g -std=c99 -D_DEFAULT_SOURCE -Wall -Wextra -Werror

all: module admin syncd agent

help:
	@echo "make            build the module, sandbox-admin and sandbox-syncd"
	@echo "                into build/"
	@echo "make deps       install the Debian packages needed (root or sudo)"
	@echo "make test       deps + build + the whole test suite (prove),"
	@echo "                then the end-to-end tests under AddressSanitizer"
	@echo "make agent      build/sandbox-agent, static (musl), for any image"
	@echo "make fuzz       libFuzzer on every parser of outside input, each"
	@echo "                target SECONDS (30); FUZZ_TARGETS picks some"
	@echo "                (path body event reply); docs/fuzzing.md"
	@echo "make kube-apiserver  build a real kube-apiserver 1.20 from Debian's"
	@echo "                source package, for the sync daemon's tests"
	@echo "make demo       deps + build + run the gateway locally"
	@echo "make deb        Debian packages (module, sandbox-syncd, sandbox-admin)"
	@echo "                into build/deb/"
	@echo "make image      the gateway's OCI image from Debian packages"
	@echo "                (mmdebstrap + buildah), as localhost/sandbox-gateway"
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

admin: $(ADMIN)

$(ADMIN): src/admin/sandbox-admin.c
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_TOOLS) -o $@ $< -lcurl -ljansson

# sandbox-agent: one static musl binary that runs in any image (Alpine
# or Debian).  It links Debian's own libjansson.a and libcrypto.a (for
# base64); musl-gcc must not see glibc's headers, so only those two
# libraries' headers are put on its include path.
AGENT       := $(BUILD)/sandbox-agent
AGENT_INC   := $(BUILD)/agent-include
AGENT_SRCS  := $(wildcard src/agent/*.c)
MULTIARCH   := $(shell gcc -print-multiarch 2>/dev/null)
LIBDIR      := /usr/lib/$(MULTIARCH)
AGENT_CFLAGS ?= -O2 -std=c99 -D_GNU_SOURCE -Wall -Wextra -Werror

agent: $(AGENT)

$(AGENT): $(AGENT_SRCS) $(wildcard src/agent/*.h)
	@mkdir -p $(AGENT_INC)/openssl
	ln -sf /usr/include/jansson.h /usr/include/jansson_config.h $(AGENT_INC)/
	ln -sf /usr/include/openssl/*.h /usr/include/$(MULTIARCH)/openssl/*.h \
	    $(AGENT_INC)/openssl/
	musl-gcc -static $(AGENT_CFLAGS) -I$(AGENT_INC) -o $@ $(AGENT_SRCS) \
	    $(LIBDIR)/libjansson.a $(LIBDIR)/libcrypto.a

syncd:
	@if [ -f src/syncd/Makefile ]; then $(MAKE) -C src/syncd; fi

test: deps all kube-apiserver
	prove -I t/lib -r t/
	$(MAKE) test-asan

# the end-to-end tests again (and wake and limits, which hold requests and
# slots), nginx and the module built with
# AddressSanitizer and NGX_DEBUG_PALLOC (pool overflows are caught too);
# then the daemon's tests (and t/78's wrapping of pod templates) with
# sandbox-syncd built with ASan and UBSan
ASAN_NGX := $(BUILD)/asan/nginx/objs
test-asan:
	scripts/build-asan.sh >/dev/null
	SBX_NGINX=$(ASAN_NGX)/nginx \
	SBX_MODULE=$(ASAN_NGX)/ngx_http_sandbox_module.so \
	SBX_ASAN_OPTIONS=detect_odr_violation=0:detect_leaks=1 \
	SBX_LSAN_OPTIONS=suppressions=$(CURDIR)/t/lsan.supp \
	prove -I t/lib $(wildcard t/1*.t t/2*.t t/4*.t) t/76-wake.t t/77-limits.t t/79-subscribe-ping.t \
	    t/80-wake-release.t t/81-wake-ready.t
	$(MAKE) -C src/syncd OUT=$(BUILD)/asan-syncd \
	    CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer"
	SBX_SYNCD=$(BUILD)/asan-syncd/sandbox-syncd \
	ASAN_OPTIONS=detect_leaks=1 \
	prove -I t/lib $(wildcard t/3*.t) t/78-agent-pod.t

unit:
	prove -I t/lib t/unit.t

# a real kube-apiserver for the sync daemon's tests (cached outside the repo)
kube-apiserver:
	t/k8s/build-apiserver.sh

# every target for SECONDS each; a crash saves its input in build/fuzz
fuzz:
	t/fuzz/run.sh $(or $(SECONDS),30) $(FUZZ_TARGETS)

demo: deps all
	scripts/demo.sh

# Debian packages, built from a copy of the tree so that the build's
# leftovers (obj-*, debian/.debhelper) stay out of the work tree
DEB_DIR := $(BUILD)/deb
deb: deps
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/src
	tar -C $(CURDIR) --exclude=./build --exclude=./.git -cf - . \
	    | tar -C $(DEB_DIR)/src -xf -
	cd $(DEB_DIR)/src && dpkg-buildpackage -b -us -uc
	rm -rf $(DEB_DIR)/src
	@ls $(DEB_DIR)/*.deb

# the gateway's OCI image: docker/build-image.sh
image: all
	docker/build-image.sh

clean:
	rm -rf $(BUILD)
