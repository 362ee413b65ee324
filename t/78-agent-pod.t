#!/usr/bin/perl
# Plain images as sandboxes: sandbox-syncd's --agent-image wraps the pod
# template of a Sandbox whose image serves no exec (an init container
# copying sandbox-agent into an emptyDir, the runtime container running it
# as its entrypoint), checked on the objects a real kube-apiserver keeps,
# in both API versions, with the test CRDs and, when it is at hand, the
# upstream CRD and its full PodSpec schema (unknown fields pruned, types
# checked).  Then the whole stack: a sandbox of python:3.12-alpine created
# through the gateway's API is started by scripts/local-controller.pl as
# the real sandbox-agent, and exec'd through the gateway (argv form, the
# AIO shell form, SSE).

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use JSON::PP;
use Time::HiRes qw(time sleep);
use SbxTest;
use SbxKube;

my $t = SbxTest->new;
my $root = $t->root;
my $syncd = $t->syncd_binary;
my $agent = "$root/build/sandbox-agent";
plan skip_all => "$syncd not built" unless -x $syncd;
plan skip_all => "no $agent (make agent)" unless -x $agent;
my $k = SbxKube->start($t);
plan skip_all => 'no kube-apiserver (t/k8s/build-apiserver.sh)' unless $k;
*wait_for = \&SbxKube::wait_for;
my $J = JSON::PP->new->utf8->canonical;
$SIG{PIPE} = 'IGNORE';

my $AGENT_IMAGE = 'registry.example/sandbox-gateway:1.2';
my $BIN = '/opt/sandbox-agent/sandbox-agent';
my $CRDS = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';

$t->redis_start;

### the pod template, as the kube-apiserver keeps it

sub kube { $k->call(@_) }

sub install_crd {
    my ($json, $version) = @_;
    kube('DELETE', "$CRDS/sandboxes.agents.x-k8s.io");
    wait_for(sub { (kube('GET', "$CRDS/sandboxes.agents.x-k8s.io"))[0] == 404 },
             30);
    # from a file: the upstream CRD is too long for one argument
    my $file = $t->dir . '/crd.json';
    open my $fh, '>', $file or die "$file: $!";
    print $fh $json;
    close $fh;
    my @curl = ('curl', '-s', '-o', '/dev/null', '-w', '%{http_code}',
                '--cacert', $k->ca_file,
                '-H', "Authorization: Bearer $k->{K8S_TOKEN}",
                '-H', 'Content-Type: application/json',
                '--data-binary', "\@$file", $k->api . $CRDS);
    my $ok = wait_for(sub {
        open my $p, '-|', @curl or return 0;
        my $code = <$p> // '';
        close $p;
        return $code eq '201';
    }, 30);
    return $ok && wait_for(sub {
        (kube('GET', "/apis/agents.x-k8s.io/$version/sandboxes"))[0] == 200 },
        30);
}

# the upstream CRD (../shared/k8s/crds), made acceptable to Kubernetes
# 1.20: no CEL rules (x-kubernetes-validations); no empty-string defaults
# (1.20 reads them as null), so a list-map key that had one is required
# instead; no conversion webhook (there is none here: both versions are
# served as stored, as their pod templates are the same)
sub upstream_crd {
    my @where = grep { defined && -f }
        ($ENV{SBX_SANDBOX_CRD},
         map { "$_/shared/k8s/crds/agents.x-k8s.io_sandboxes.yaml" }
             "$root/..", "$root/../..");
    return undef unless @where && eval { require YAML::XS; 1 };
    no warnings 'once';
    local $YAML::XS::Boolean = 'JSON::PP';
    my $crd = YAML::XS::LoadFile($where[0]);
    my $strip;
    $strip = sub {
        my ($n) = @_;
        if (ref $n eq 'HASH') {
            delete $n->{'x-kubernetes-validations'};
            delete $n->{default}
                if defined $n->{default} && !ref $n->{default}
                   && $n->{default} eq '';
            $strip->($_) for values %$n;
            my $items = $n->{items};
            for my $key (@{ $n->{'x-kubernetes-list-map-keys'} // [] }) {
                next if defined $items->{properties}{$key}{default}
                        || grep { $_ eq $key } @{ $items->{required} // [] };
                push @{ $items->{required} }, $key;
            }
        } elsif (ref $n eq 'ARRAY') {
            $strip->($_) for @$n;
        }
    };
    $strip->($crd);
    delete $crd->{spec}{conversion};
    return $J->encode($crd);
}

# a template of our own: the shipped one, plus a port annotation and, for
# one case, a command and args of its own
sub template {
    my ($file, %o) = @_;
    open my $in, '<', "$root/conf/sandbox-template.json" or die $!;
    my $tpl = decode_json(do { local $/; <$in> });
    $tpl->{metadata}{annotations}{'agents.x-k8s.io/port'} = "$o{port}"
        if $o{port};
    if ($o{command}) {
        my $c = $tpl->{spec}{podTemplate}{spec}{containers}[0];
        $c->{command} = $o{command};
        $c->{args} = $o{args};
    }
    open my $out, '>', $t->dir . "/$file" or die $!;
    print $out encode_json($tpl);
    close $out;
    return $t->dir . "/$file";
}

sub queue {
    my ($name, $image, $ns) = @_;
    $t->redis('HSET', "sbx:sandbox:alice:$name", name => $name,
              user => 'alice', state => 'creating');
    $t->redis('XADD', 'sbx:ops', '*', op => 'create', user => 'alice',
              name => $name, namespace => $ns // 'user-alice',
              image => $image, requested_at => int time);
}

# the object once sandbox-syncd has created it (and said it is done)
sub created {
    my ($version, $name, $ns) = @_;
    my $path = "/apis/agents.x-k8s.io/$version/namespaces/"
               . ($ns // 'user-alice') . "/sandboxes/$name";
    my $obj;
    wait_for(sub { (my $c, $obj) = kube('GET', $path); $c == 200 }, 20)
        or return undef;
    wait_for(sub { ($t->redis('HGET', "sbx:sandbox:alice:$name", 'state')
                    // '') eq 'active' });
    my $err = $t->redis('HGET', "sbx:sandbox:alice:$name", 'error');
    diag("$name: $err") if $err;
    return $obj;
}

sub syncd_start {
    my ($name, $version, $template, @more) = @_;
    $t->spawn($name, $k->daemon_env($t, SANDBOX_API_VERSION => $version),
              $syncd, '--watch-timeout', '5', '--template', $template,
              '--agent-image', $AGENT_IMAGE, @more);
}

# the wrapped object, field by field
sub wrapped_ok {
    my ($obj, $what, %o) = @_;
    my $pod = $obj && $obj->{spec}{podTemplate}{spec} || {};
    my $c = $pod->{containers}[0] || {};
    my $port = $o{port} // 8080;
    is_deeply($pod->{volumes}, [ { name => 'sandbox-agent', emptyDir => {} } ],
              "$what: the emptyDir volume");
    is_deeply($pod->{initContainers},
              [ { name => 'sandbox-agent', image => $AGENT_IMAGE,
                  command => [ '/usr/lib/sandbox-gateway/sandbox-agent',
                               '--install', $BIN ],
                  volumeMounts => [ { name => 'sandbox-agent',
                                      mountPath => '/opt/sandbox-agent',
                                      readOnly => JSON::PP::false } ] } ],
              "$what: the init container installs the agent");
    is($c->{image}, $o{image}, "$what: the image is the one asked for");
    is_deeply($c->{command}, [ $BIN, '--listen', ":$port",
                               @{ $o{tail} // [] } ],
              "$what: the agent is the entrypoint, on the sandbox's port");
    ok(!exists $c->{args}, "$what: no args left to the image");
    is_deeply($c->{readinessProbe} && $c->{readinessProbe}{httpGet},
              { path => '/health', port => $port },
              "$what: ready once the agent answers /health");
    is_deeply($c->{volumeMounts},
              [ { name => 'sandbox-agent', mountPath => '/opt/sandbox-agent',
                  readOnly => JSON::PP::true } ],
              "$what: the volume mounted read-only");
    # (the upstream schema adds protocol: TCP)
    is_deeply([ map { [ $_->{name}, $_->{containerPort} ] }
                    @{ $c->{ports} // [] } ], [ [ 'public', 8080 ] ],
              "$what: the container's port kept");
}

# $command: what the template's container runs, if it says
sub unwrapped_ok {
    my ($obj, $what, $image, $command) = @_;
    my $pod = $obj && $obj->{spec}{podTemplate}{spec} || {};
    is($pod->{containers}[0]{image}, $image, "$what: the image");
    ok($obj && !$pod->{initContainers} && !$pod->{volumes}
       && !$pod->{containers}[0]{volumeMounts},
       "$what: no init container, no volume")
        or diag(encode_json($pod));
    is_deeply($pod->{containers}[0]{command}, $command,
              "$what: the container's own command");
}

my $shipped = "$root/conf/sandbox-template.json";
my $own = template('own.json', port => 9000, command => [ 'node' ],
                   args => [ 'server.js', '--port', '3000' ]);

{
    ok(install_crd(scalar `cat $root/t/k8s/sandbox-crd-v1beta1.json`,
                   'v1beta1'), 'v1beta1 test CRD installed');
    syncd_start('syncd1', 'v1beta1', $shipped);
    queue('py', 'python:3.12-alpine');
    queue('nd', 'node:22-alpine');
    queue('aio', 'ghcr.io/agent-infra/sandbox:latest');
    queue('aiod', 'ghcr.io/agent-infra/sandbox@sha256:' . 'ab' x 32);
    queue('aion', 'ghcr.io/agent-infra/sandboxes:1');
    wrapped_ok(created('v1beta1', 'py'), 'v1beta1 python:3.12-alpine',
               image => 'python:3.12-alpine');
    wrapped_ok(created('v1beta1', 'nd'), 'v1beta1 node:22-alpine',
               image => 'node:22-alpine');
    unwrapped_ok(created('v1beta1', 'aio'), 'v1beta1 AIO image',
                 'ghcr.io/agent-infra/sandbox:latest');
    unwrapped_ok(created('v1beta1', 'aiod'), 'v1beta1 AIO image by digest',
                 'ghcr.io/agent-infra/sandbox@sha256:' . 'ab' x 32);
    my $o = created('v1beta1', 'aion');
    ok($o && $o->{spec}{podTemplate}{spec}{initContainers},
       'an image that merely begins like the AIO one is wrapped');
    like($t->read_file('syncd1.out'),
         qr{create alice/py: python:3\.12-alpine wrapped by sandbox-agent},
         'the daemon says what it wrapped');
    $t->reap('syncd1', 'TERM');

    # a template with a command, args and a port of its own; and a list
    # of exec images of the operator's
    syncd_start('syncd2', 'v1beta1', $own, '--exec-images',
                'example.org/aio, registry.example/runtimes/');
    queue('own', 'alpine:3.20');
    queue('ex1', 'example.org/aio:3');
    queue('ex2', 'registry.example/runtimes/any:1');
    queue('ex3', 'ghcr.io/agent-infra/sandbox:latest');
    wrapped_ok(created('v1beta1', 'own'), 'a template with its own command',
               image => 'alpine:3.20', port => 9000,
               tail => [ '--', 'node', 'server.js', '--port', '3000' ]);
    unwrapped_ok(created('v1beta1', 'ex1'), '--exec-images: an image',
                 'example.org/aio:3', [ 'node' ]);
    unwrapped_ok(created('v1beta1', 'ex2'), '--exec-images: a repository path',
                 'registry.example/runtimes/any:1', [ 'node' ]);
    $o = created('v1beta1', 'ex3');
    ok($o && $o->{spec}{podTemplate}{spec}{initContainers},
       '--exec-images replaces the default list');
    $t->reap('syncd2', 'TERM');

    # no --agent-image: nothing changes
    $t->spawn('syncd3', $k->daemon_env($t), $syncd, '--watch-timeout', '5',
              '--template', $shipped);
    queue('plain', 'alpine:3.20');
    unwrapped_ok(created('v1beta1', 'plain'), 'no --agent-image',
                 'alpine:3.20');
    $t->reap('syncd3', 'TERM');
}

{
    ok(install_crd(scalar `cat $root/t/k8s/sandbox-crd-v1alpha1.json`,
                   'v1alpha1'), 'v1alpha1 test CRD installed');
    syncd_start('syncd4', 'v1alpha1', $shipped);
    queue('a-py', 'python:3.12-alpine');
    queue('a-aio', 'ghcr.io/agent-infra/sandbox:latest');
    wrapped_ok(created('v1alpha1', 'a-py'), 'v1alpha1 python:3.12-alpine',
               image => 'python:3.12-alpine');
    unwrapped_ok(created('v1alpha1', 'a-aio'), 'v1alpha1 AIO image',
                 'ghcr.io/agent-infra/sandbox:latest');
    $t->reap('syncd4', 'TERM');
}

SKIP: {
    my $crd = upstream_crd();
    skip 'no upstream Sandbox CRD (SBX_SANDBOX_CRD, ../shared/k8s/crds)', 1
        unless $crd;
    ok(install_crd($crd, 'v1beta1') && wait_for(sub {
           (kube('GET', '/apis/agents.x-k8s.io/v1alpha1/sandboxes'))[0]
           == 200 }, 30),
       'the upstream CRD installed: v1beta1 and v1alpha1 served, the pod '
       . 'template schema-checked');
    for my $v (qw(v1beta1 v1alpha1)) {
        syncd_start("syncd-$v", $v, $own);
        queue("u-$v", 'alpine:3.20');
        queue("u-$v-aio", 'ghcr.io/agent-infra/sandbox:latest');
        wrapped_ok(created($v, "u-$v"), "upstream CRD $v: alpine:3.20",
                   image => 'alpine:3.20', port => 9000,
                   tail => [ '--', 'node', 'server.js', '--port', '3000' ]);
        my $o = created($v, "u-$v-aio");
        ok($o && !$o->{spec}{podTemplate}{spec}{initContainers},
           "upstream CRD $v: the AIO image unwrapped");
        $t->reap("syncd-$v", 'TERM');
    }
    # what the schema refuses comes back as the sandbox's error: proof
    # that the wrapped template was checked, not merely kept
    my ($code, $r) = kube('POST',
        '/apis/agents.x-k8s.io/v1beta1/namespaces/user-alice/sandboxes',
        $J->encode({ apiVersion => 'agents.x-k8s.io/v1beta1',
                     kind => 'Sandbox', metadata => { name => 'bad' },
                     spec => { podTemplate => { spec => {
                         containers => [ { name => 'c', image => 'x' } ],
                         initContainers => [ { image => 'x',
                                               command => 'not a list' } ],
                     } } } }));
    is($code, 422, 'the upstream schema refuses a malformed init container')
        or diag($J->encode($r // {}));
}

### the whole stack: created through the API, run by the local controller

ok(install_crd(scalar `cat $root/t/k8s/sandbox-crd-v1beta1.json`, 'v1beta1'),
   'v1beta1 test CRD again');
$t->redis('FLUSHALL');
$t->write_shipped_conf;
$t->nginx_start;

my $pod_port = $t->port('pods');
my $first_ip = 100 + ($$ % 100);
syncd_start('syncd', 'v1beta1', template('pods.json', port => $pod_port));
$t->spawn('controller', {}, $^X, "$root/scripts/local-controller.pl",
          '--api', $k->api, '--token-file', $k->token_file,
          '--ca-file', $k->ca_file, '--workdir', $t->dir,
          '--first-ip', $first_ip);
$t->watch_log($t->dir . "/$_.out") for qw(syncd controller);

my $admin = $t->admin_key;
my $res = $t->http('POST', '/api/admin/users',
                   headers => { Authorization => "Bearer $admin",
                                'Content-Type' => 'application/json' },
                   body => '{"username":"bob"}');
my $uid = $t->json($res)->{user}{id};
$res = $t->http('POST', "/api/admin/users/$uid/apikeys",
                headers => { Authorization => "Bearer $admin",
                             'Content-Type' => 'application/json' },
                body => '{"name":"k"}');
my $key = $t->json($res)->{api_key};
my %auth = (Authorization => "Bearer $key");
my %json = (%auth, 'Content-Type' => 'application/json');

sub post {
    my ($path, $body) = @_;
    my $r = $t->http('POST', $path, headers => \%json,
                     body => ref $body ? $J->encode($body) : $body);
    $r->{json} = eval { decode_json($r->{body}) };
    return $r;
}

$res = post('/api/sandboxes', { name => 'py', image => 'python:3.12-alpine' });
is($res->{status}, 201, 'a python:3.12-alpine sandbox created through the API');
ok(wait_for(sub { post('/proxy/py/v1/shell/exec', { command => 'true' })
                      ->{status} == 200 }, 60),
   'it serves exec through the gateway')
    or diag($t->read_file('syncd.out'), $t->read_file('controller.out'));

my ($code, $obj) = kube('GET', '/apis/agents.x-k8s.io/v1beta1/namespaces/'
                               . 'user-bob/sandboxes/py');
wrapped_ok($obj, 'created through the API', image => 'python:3.12-alpine',
           port => $pod_port);
like($t->read_file('controller.out'),
     qr{user-bob/py runs on 127\.0\.0\.\d+:$pod_port \(pid (\d+), sandbox-agent\)},
     'the local controller runs sandbox-agent as the pod\'s process');
my ($agent_pid) = $t->read_file('controller.out')
                  =~ /user-bob\/py runs on \S+ \(pid (\d+), sandbox-agent/;
$agent_pid //= 0;
ok($agent_pid && (readlink("/proc/$agent_pid/exe") // '') eq $agent,
   'that process is build/sandbox-agent');

$res = $t->http('GET', '/bob/py/health', headers => \%auth);
is(eval { decode_json($res->{body})->{version} }, '1.0',
   'the agent answers its health check through the gateway');

# argv form: each element reaches the program literally
my @tricky = ("it's", 'say "hi"', "a b  c", "line1\nline2",
              '$(touch ' . $t->dir . '/pwned)', '`id`', '; exit 7', '$HOME',
              '*', '', "héllo ✓ 日本", '--', '-n');
$res = post('/bob/py/v1/shell/exec',
            { argv => [ $^X, '-e', 'print join "\0", @ARGV', @tricky ] });
is($res->{status}, 200, 'argv form through the gateway: 200');
is_deeply([ split /\0/, $res->{json}{data}{output} // '', -1 ], \@tricky,
          'argv form: every element arrived as sent');
ok(!-e $t->dir . '/pwned', 'argv form: no shell ran');

# the AIO shell form, on both path forms
$res = post('/proxy/py/v1/shell/exec',
            { command => 'echo $((6*7)); echo err >&2; exit 3' });
is($res->{status}, 200, 'shell form: 200');
is($res->{json}{data}{output}, "42\nerr\n", 'shell form: its output');
is($res->{json}{data}{exit_code}, 3, 'shell form: its exit code');
$res = post('/bob/py/v1/shell/exec', { command => 'pwd' });
is($res->{json}{data}{output}, $t->dir . "/user-bob-py\n",
   'shell form: in the pod\'s directory');

# SSE: chunks as they come, then the result
sub sse_exec { $t->sse_post(@_, port => 1, headers => \%auth) }

my ($head, @ev) = sse_exec('/bob/py/v1/shell/exec',
                           { command => 'echo one; sleep 0.8; echo two' });
like($head, qr{^HTTP/1\.1 200 .*content-type: text/event-stream}is,
     'SSE through the gateway: an event stream');
my @out = grep { $_->{event} eq 'output' } @ev;
is_deeply([ map { $_->{data}{output} } @out ], [ "one\n", "two\n" ],
          'SSE: the output events');
ok(@out == 2 && $out[1]{at} - $out[0]{at} > 0.5,
   'SSE: each chunk as it was printed, not at the end');
is($ev[-1] && $ev[-1]{event}, 'result', 'SSE: the result last');
is($ev[-1] && $ev[-1]{data}{data}{output}, "one\ntwo\n", 'SSE: whole output');

($head, @ev) = sse_exec('/bob/py/v1/shell/exec',
                        { argv => [ 'printf', '%s\n', 'a b', '$(x)' ] });
is($ev[-1] && $ev[-1]{data}{data}{output}, "a b\n\$(x)\n",
   'SSE with the argv form');

# an AIO-image sandbox beside it is still the runtime double
$res = post('/api/sandboxes', { name => 'aio' });
is($res->{status}, 201, 'an AIO-image sandbox');
ok(wait_for(sub { post('/proxy/aio/v1/shell/exec', { command => 'true' })
                      ->{status} == 200 }, 60), 'it serves exec');
like($t->read_file('controller.out'),
     qr{user-bob/aio runs on \S+ \(pid \d+, runtime double\)},
     'the AIO image runs the runtime double (its MCP and debug endpoints)');

# deleted: the agent stops
$res = $t->http('DELETE', '/api/sandboxes/py', headers => \%auth);
is($res->{status}, 200, 'delete');
ok($agent_pid && wait_for(sub { !-e "/proc/$agent_pid"
                                || (`cat /proc/$agent_pid/stat 2>/dev/null`
                                    // '') =~ /^\d+ \(\S+\) Z/ }, 20),
   'the agent process ended');

$t->reap('controller', 'TERM');
$t->reap('syncd', 'TERM');
$t->nginx_stop;
$t->error_log_ok;
$t->spawned_ok;

done_testing;
