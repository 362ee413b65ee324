#!/usr/bin/perl
# deploy/ (kustomize): each overlay rendered by kubectl and what it says
# checked; every object the test kube-apiserver (1.20) serves a version of
# judged by it (`kubectl apply --dry-run=server`), the newer kinds
# (policy/v1 PodDisruptionBudget, autoscaling/v2 HorizontalPodAutoscaler)
# checked against their published OpenAPI schema (t/fixtures/); then
# sandbox-syncd run with a token of the manifests' ServiceAccount through
# t/30's flows, its RBAC shown sufficient and other verbs refused; and
# the pod's readiness and preStop scripts run against a real gateway.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use B;
use POSIX qw(WNOHANG);
use IO::Socket::IP;
use SbxTest;
use SbxKube;

my $t = SbxTest->new;
my $root = $t->root;
my $dir = $t->dir;

my ($kubectl) = grep { -x } ($ENV{KUBECTL} // ()),
                map { "$_/kubectl" } split /:/, $ENV{PATH};
plan skip_all => 'no kubectl (scripts/install-deps.sh installs one)'
    unless $kubectl;
plan skip_all => 'no YAML::XS (libyaml-libyaml-perl, scripts/install-deps.sh)'
    unless eval { require YAML::XS; 1 };
{ no warnings "once"; $YAML::XS::Boolean = "JSON::PP"; }
diag("kubectl: " . (`$kubectl version --client 2>&1` =~ /(v\d+\.\d+\.\d+)/)[0]);

sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    return scalar <$fh>;
}

sub spew {
    my ($file, $text) = @_;
    open my $fh, '>', $file or die "$file: $!";
    print $fh $text;
    close $fh;
}

# the ConfigMaps carry the repository's files, not copies that drift

for my $f ('nginx.conf', 'sandbox-template.json') {
    my $src = $f eq 'nginx.conf' ? 'conf/nginx.conf' : "conf/$f";
    ok(slurp("$root/deploy/base/$f") eq slurp("$root/$src"),
       "deploy/base/$f is $src (after editing it: cp $src deploy/base/)");
}

### the overlays as kubectl renders them

# YAML::XS gives a plain number both a number and a string: keep the
# number only, so that JSON (and the schema check) see its YAML type
sub numify {
    my ($v) = @_;
    if (ref $v eq 'HASH') { $v->{$_} = numify($v->{$_}) for keys %$v }
    elsif (ref $v eq 'ARRAY') { $_ = numify($_) for @$v }
    elsif (defined $v && !ref $v
           && B::svref_2object(\$v)->FLAGS & (B::SVf_IOK | B::SVf_NOK)) {
        return 0 + $v;
    }
    return $v;
}

# a file kubectl applies: one v1 List
sub list_file {
    my ($file, @items) = @_;
    spew($file, encode_json({ apiVersion => 'v1', kind => 'List',
                              items => \@items }));
    return $file;
}

my %docs;
for my $o (qw(gke dev)) {
    my $yaml = `$kubectl kustomize $root/deploy/overlays/$o 2>$dir/$o.err`;
    is($?, 0, "$o: kubectl kustomize renders it")
        or diag(slurp("$dir/$o.err"));
    $docs{$o} = [ map { numify($_) } grep { ref eq 'HASH' }
                  YAML::XS::Load($yaml) ];
}

sub docs {
    my ($o, $kind, $name) = @_;
    # generated ConfigMaps carry a hash suffix
    my $re = defined $name ? qr/^\Q$name\E(?:-[a-z0-9]{10})?$/ : qr/^/;
    return grep { $_->{kind} eq $kind && $_->{metadata}{name} =~ $re }
           @{ $docs{$o} };
}

sub one { (docs(@_))[0] }

my $conf = slurp("$root/conf/nginx.conf");
for my $o (qw(gke dev)) {
    my $gw = one($o, 'Deployment', 'sandbox-gateway');
    my $pod = $gw->{spec}{template}{spec};
    my ($c) = @{ $pod->{containers} };
    is($gw->{spec}{strategy}{rollingUpdate}{maxUnavailable}, 0,
       "$o: rolling update with maxUnavailable 0");
    like(join(' ', @{ $c->{lifecycle}{preStop}{exec}{command} }),
         qr/gateway-stop\.sh/, "$o: preStop drains and quits nginx");
    like(join(' ', @{ $c->{readinessProbe}{exec}{command} }),
         qr/gateway-ready\.pl/, "$o: readiness from /health");
    ok($c->{resources}{requests}{cpu} && $c->{resources}{requests}{memory},
       "$o: resource requests");
    ok($pod->{securityContext}{runAsNonRoot}
       && $c->{securityContext}{readOnlyRootFilesystem}
       && !$c->{securityContext}{allowPrivilegeEscalation},
       "$o: non-root, read-only root, no privilege escalation");
    my ($key) = grep { $_->{mountPath} eq '/etc/nginx/sandbox-admin.key' }
                @{ $c->{volumeMounts} };
    my ($kv) = grep { $key && $_->{name} eq $key->{name} } @{ $pod->{volumes} };
    is($kv && $kv->{secret}{secretName}, 'sandbox-admin-key',
       "$o: the admin key from the Secret at /etc/nginx/sandbox-admin.key");
    my ($cv) = grep { $_->{configMap} && $_->{configMap}{name} =~ /^gateway-nginx-/ }
               @{ $pod->{volumes} };
    my $cm = $cv && one($o, 'ConfigMap', $cv->{configMap}{name});
    ok($cm && $cm->{data}{'nginx.conf'} eq $conf,
       "$o: the mounted ConfigMap holds conf/nginx.conf");
    my ($read) = $conf =~ /proxy_read_timeout\s+(\d+)s/;
    cmp_ok($pod->{terminationGracePeriodSeconds}, '>', $read, "$o: grace period "
           . "$pod->{terminationGracePeriodSeconds} s beyond proxy_read_timeout")
        if $o eq 'gke';

    my $sy = one($o, 'Deployment', 'sandbox-syncd');
    my $sc = $sy->{spec}{template}{spec}{containers}[0];
    is($sy->{spec}{template}{spec}{serviceAccountName}, 'sandbox-syncd',
       "$o: sandbox-syncd runs as its ServiceAccount");
    like(join(' ', @{ $sc->{args} }), qr{--lease \$\(POD_NAMESPACE\)/sandbox-syncd},
         "$o: sandbox-syncd elects on a Lease");
    my ($ga) = grep { $sc->{args}[$_] eq '--agent-image' } 0 .. $#{ $sc->{args} };
    is(defined $ga ? $sc->{args}[$ga + 1] : undef, $c->{image},
       "$o: plain images get sandbox-agent from the gateway's image "
       . "($c->{image})");
    like($c->{image}, $o eq 'gke' ? qr{^europe-docker\.pkg\.dev/.*:latest$}
                                  : qr{^sandbox-gateway:dev$},
         "$o: the overlay's image");

    my $rules = one($o, 'ClusterRole', 'sandbox-syncd')->{rules};
    my @granted = map { my $r = $_; map {
                          "$r->{apiGroups}[0]/$_:" . join(',', sort @{ $r->{verbs} })
                      } @{ $r->{resources} } } @$rules;
    is_deeply([ sort @granted ],
              [ '/namespaces:create',
                'agents.x-k8s.io/sandboxes:create,delete,list,patch,watch' ],
              "$o: the ClusterRole holds exactly the daemon's calls");
    is_deeply(one($o, 'Role', 'sandbox-syncd-lease')->{rules},
              [ { apiGroups => ['coordination.k8s.io'], resources => ['leases'],
                  verbs => ['create'] },
                { apiGroups => ['coordination.k8s.io'], resources => ['leases'],
                  resourceNames => ['sandbox-syncd'], verbs => ['get', 'update'] } ],
              "$o: the Lease: create, and get/update of its own only");
}

is(one('gke', 'Deployment', 'sandbox-syncd')->{spec}{replicas}, 2,
   'gke: two sandbox-syncd replicas');
my $svc = one('gke', 'Service', 'sandbox-gateway');
is($svc->{spec}{type}, 'LoadBalancer', 'gke: a LoadBalancer Service');
is($svc->{metadata}{annotations}{'cloud.google.com/l4-rbs'}, 'enabled',
   'gke: the backend-service based load balancer');
is(scalar(docs('gke', 'StatefulSet')), 0, 'gke: no in-cluster Redis');
like(one('gke', 'ConfigMap', 'sandbox-redis')->{data}{SANDBOX_REDIS},
     qr/^\d+\.\d+\.\d+\.\d+:\d+$/, 'gke: Redis is an address (Memorystore)');

my $redis = one('dev', 'StatefulSet', 'redis');
is($redis->{spec}{replicas}, 2, 'dev: Redis master and replica');
ok(@{ $redis->{spec}{volumeClaimTemplates} // [] }, 'dev: Redis on volumes');
is(one('dev', 'StatefulSet', 'redis-sentinel')->{spec}{replicas}, 3,
   'dev: three sentinels');
my $scripts = one('dev', 'ConfigMap', 'redis-scripts')->{data};
like($scripts->{'redis-start.sh'}, qr/^appendonly yes$/m, 'dev: AOF on');
like($scripts->{'sentinel-start.sh'}, qr/sentinel monitor \$name \$master 6379 2/,
     'dev: the sentinels monitor the master, quorum 2');

### the gateway pod runs the image as built: its entrypoint, user, port

my $image_uid = (slurp("$root/docker/build-image.sh") =~ /^UID_GW=(\d+)$/m)[0];
like(slurp("$root/docker/Dockerfile"), qr/^USER $image_uid:$image_uid$/m,
     "the image's user: uid $image_uid in both builds");
like(slurp("$root/docker/build-image.sh"), qr{s/\^.*listen.*\\18080;/},
     "the image's nginx.conf listens on 8080");
for my $o (qw(gke dev)) {
    my $gw = one($o, 'Deployment', 'sandbox-gateway');
    my $pod = $gw->{spec}{template}{spec};
    my ($c) = @{ $pod->{containers} };
    my %env = map { ($_->{name} => $_->{value} // $_->{valueFrom}) }
              @{ $c->{env} };
    ok(!exists $c->{command} && !exists $c->{args},
       "$o: the image's own entrypoint");
    is_deeply([ @{ $pod->{securityContext} }{qw(runAsUser runAsGroup fsGroup)} ],
              [ ($image_uid) x 3 ], "$o: the image's user, uid $image_uid");
    ok(!$pod->{securityContext}{sysctls}, "$o: no sysctl for a low port");
    is($c->{ports}[0]{containerPort}, 8080, "$o: the image's port, 8080");
    is($env{SANDBOX_LISTEN}, '8080', "$o: the configuration listens there");
    is($env{GATEWAY_HEALTH_PORT}, '8080', "$o: the readiness probe asks there");
    like($env{SANDBOX_REDIS}{configMapKeyRef}{name},
         qr/^sandbox-redis(?:-[a-z0-9]{10})?$/,
         "$o: SANDBOX_REDIS from the ConfigMap");
    my %mount = map { ($_->{mountPath} => $_) } @{ $c->{volumeMounts} };
    is($mount{'/etc/nginx/nginx.conf'} && $mount{'/etc/nginx/nginx.conf'}{subPath},
       'nginx.conf', "$o: conf/nginx.conf is the image's /etc/nginx/nginx.conf");
    my %vol = map { ($_->{name} => $_) } @{ $pod->{volumes} };
    ok($mount{'/tmp'} && $vol{ $mount{'/tmp'}{name} }{emptyDir},
       "$o: /tmp writable (the entrypoint's copy), the root read-only");
    ok(!$mount{'/var/log/nginx'},
       "$o: /var/log/nginx the image's (its links to stdout and stderr)");
    my $svc = one($o, 'Service', 'sandbox-gateway');
    is_deeply([ $svc->{spec}{ports}[0]{port}, $svc->{spec}{ports}[0]{targetPort} ],
              [ 80, 'http' ], "$o: the Service's port 80 is the pod's 8080");
}

### the image's entrypoint: conf/nginx.conf pointed at $SANDBOX_REDIS

{
    mkdir "$dir/start";
    spew("$dir/start/nginx", "#!/bin/sh\necho \"\$@\" > $dir/start/args\n");
    chmod 0755, "$dir/start/nginx";
    my @made;
    END { system('rm', '-rf', @made) if @made }
    my $start = sub {
        local $ENV{PATH} = "$dir/start:$ENV{PATH}";
        local $ENV{SANDBOX_NGINX_CONF} = "$root/deploy/base/nginx.conf";
        local $ENV{SANDBOX_LISTEN} = '8080';
        local $ENV{SANDBOX_REDIS} = shift;
        unlink "$dir/start/args";
        my $out = `/bin/sh $root/docker/entrypoint.sh 2>&1`;
        my $args = -e "$dir/start/args" ? slurp("$dir/start/args") : '';
        my ($c) = $args =~ /-c (\S+)/;
        push @made, $c =~ s{/nginx\.conf$}{}r if $c;
        return ($? >> 8, $out, $args, $c && eval { slurp($c) }, $c);
    };
    my ($rc, $out, $args, $got, $c) = $start->('localhost:6390');
    is($rc, 0, 'entrypoint: a Redis host name') or diag($out);
    like($out, qr/Redis at 127\.0\.0\.1:6390/, 'entrypoint: resolved once, here');
    (my $want = $conf) =~ s/(sandbox_redis\s+)127\.0\.0\.1:6379;/${1}127.0.0.1:6390;/;
    $want =~ s/^(\s*listen\s+)80;/${1}8080;/m;
    ok($got eq $want && $got ne $conf,
       'entrypoint: conf/nginx.conf with only its sandbox_redis and listen changed');
    like($args, qr{^-c /tmp/sandbox-gateway\.\w+/nginx\.conf -g daemon off;$},
         'entrypoint: nginx in the foreground, on the copy under /tmp');

    # what the pod runs is a configuration nginx and the module accept
    # (the paths only a pod has made the test's)
    my $pod = $got;
    my $module = $t->module_path;
    $pod =~ s{/usr/lib/nginx/modules/ngx_http_sandbox_module\.so}{$module};
    $pod =~ s{/etc/nginx/sandbox-admin\.key}{$dir/start/admin.key};
    $pod =~ s{/var/log/nginx/}{$dir/start/};
    spew("$dir/start/admin.key", "a" x 32 . "\n");
    chmod 0600, "$dir/start/admin.key";
    spew("$dir/start/pod.conf", $pod);
    my $bin = $t->nginx_binary;
    $out = `$bin -t -p $dir/start/ -c $dir/start/pod.conf -e $dir/start/test.log 2>&1`;
    is($?, 0, 'entrypoint: nginx -t accepts the configuration a pod runs')
        or diag($out);

    ($rc, $out, $args, $got) = $start->('10.1.2.3:6379');
    like($got, qr/^\s*sandbox_redis\s+10\.1\.2\.3:6379;$/m,
         'entrypoint: an address as is');
    ($rc, $out, $args, $got) = $start->('10.1.2.3');
    like($got, qr/^\s*sandbox_redis\s+10\.1\.2\.3:6379;$/m,
         'entrypoint: the default port');
    ($rc, $out) = $start->('no-such-host.invalid:6379');
    is($rc, 1, 'entrypoint: a name that does not resolve stops the pod');
    like($out, qr/cannot resolve no-such-host\.invalid/, 'entrypoint: says so');
}

### deploy/redis's start scripts, as its pods run them, through a failover

SKIP: {
    skip 'needs root (a private network namespace)', 12 if $>;
    my $out = `$root/t/k8s/redis-pods.sh $dir/redis-pods 2>&1`;
    is($?, 0, 'redis pods: the scenario ran') or diag($out);
    my %saw = $out =~ /^(\S+) (.*)$/mg;
    is($saw{'start.redis-0'}, 'master', 'redis-0 starts as the master');
    is($saw{'start.redis-1'}, 'slave', 'redis-1 replicates it');
    is($saw{'sentinel.master'}, '127.0.0.10', 'the sentinels monitor redis-0');
    is($saw{'sentinel.others'}, 2, 'the three sentinels know each other');
    is($saw{'aof.redis-0'}, 'yes', 'AOF on');
    is($saw{'wait.acked'}, 1, 'a write acknowledged by the replica');
    is($saw{'failover.redis-1'}, 'master', 'redis-0 killed: redis-1 promoted');
    diag("failover in $saw{'failover.seconds'} s (down-after 5 s)")
        if defined $saw{'failover.seconds'};
    is($saw{'failover.sentinel'}, '127.0.0.11', 'the sentinels name it');
    is($saw{'rejoin.redis-0'}, 'slave',
       'redis-0 restarted: it asks the sentinels and follows redis-1');
    is($saw{'rejoin.master-key'}, 'kept', 'the acknowledged write survived');
    is($saw{'rejoin.key'}, 'kept', 'and reached the rejoined replica');
}

### policy/v1 and autoscaling/v2 against their published schema

my $fixture = decode_json(slurp("$root/t/fixtures/k8s-openapi-pdb-hpa.json"));
my $schemas = $fixture->{components}{schemas};

# the JSON type of a value loaded by YAML::XS or JSON::PP
sub jtype {
    my ($v) = @_;
    return 'null' unless defined $v;
    return ref $v eq 'HASH' ? 'object' : ref $v eq 'ARRAY' ? 'array'
         : 'boolean' if ref $v;
    my $f = B::svref_2object(\$v)->FLAGS;
    return 'integer' if $f & B::SVf_IOK;
    return $v == int $v ? 'integer' : 'number' if $f & B::SVf_NOK;
    return 'string';
}

# a small OpenAPI v3 schema check: $ref, allOf, oneOf, types and integer
# formats, required, and no field the schema does not name (the API
# server's strict field validation)
sub check {
    my ($v, $s, $path, $errs) = @_;
    if (my $ref = $s->{'$ref'}) {
        my ($name) = $ref =~ m{^#/components/schemas/(.+)$};
        return push @$errs, "$path: no schema $ref" unless $schemas->{$name};
        return check($v, $schemas->{$name}, $path, $errs);
    }
    check($v, $_, $path, $errs) for @{ $s->{allOf} // [] };
    if (my $one = $s->{oneOf}) {
        my $n = grep { my @e; check($v, $_, $path, \@e); !@e } @$one;
        push @$errs, "$path: matches $n of oneOf" unless $n == 1;
    }
    my $want = $s->{type} or return;
    my $got = jtype($v);
    if ($want eq 'number' ? $got !~ /^(integer|number)$/ : $got ne $want) {
        return push @$errs, "$path: $got where $want is expected";
    }
    if ($want eq 'integer' && ($s->{format} // '') eq 'int32'
        && ($v < -2**31 || $v >= 2**31)) {
        push @$errs, "$path: $v is not an int32";
    }
    if ($want eq 'string' && ($s->{format} // '') eq 'date-time'
        && $v !~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/) {
        push @$errs, "$path: $v is not a date-time";
    }
    if ($want eq 'array') {
        check($v->[$_], $s->{items}, "$path\[$_]", $errs)
            for grep { $s->{items} } 0 .. $#$v;
    }
    if ($want eq 'object') {
        for my $r (@{ $s->{required} // [] }) {
            push @$errs, "$path.$r: required" unless exists $v->{$r};
        }
        for my $k (sort keys %$v) {
            if ($s->{properties} && $s->{properties}{$k}) {
                check($v->{$k}, $s->{properties}{$k}, "$path.$k", $errs);
            } elsif ($s->{additionalProperties}) {
                check($v->{$k}, $s->{additionalProperties}, "$path.$k", $errs);
            } elsif ($s->{properties}) {
                push @$errs, "$path.$k: unknown field";
            }
        }
    }
}

my %newer = ('policy/v1 PodDisruptionBudget'
                 => 'io.k8s.api.policy.v1.PodDisruptionBudget',
             'autoscaling/v2 HorizontalPodAutoscaler'
                 => 'io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler');
is_deeply($fixture->{roots}, \%newer, 'the fixture names both kinds');

sub schema_errors {
    my ($doc) = @_;
    my $root_schema = $newer{"$doc->{apiVersion} $doc->{kind}"} or return 'no schema';
    my @errs;
    check($doc, { '$ref' => "#/components/schemas/$root_schema" }, '', \@errs);
    return @errs;
}

for my $o (qw(gke dev)) {
    my @newer = grep { $newer{"$_->{apiVersion} $_->{kind}"} } @{ $docs{$o} };
    ok(scalar(@newer) >= 2, "$o: " . scalar(@newer) . ' PDB/HPA documents');
    for my $d (@newer) {
        my @e = schema_errors($d);
        ok(!@e, "$o: $d->{kind} $d->{metadata}{name} matches the "
                . "$d->{apiVersion} schema") or diag(join "\n", @e);
    }
    my $gw = one($o, 'Deployment', 'sandbox-gateway');
    my $pdb = one($o, 'PodDisruptionBudget', 'sandbox-gateway');
    is_deeply($pdb->{spec}{selector}{matchLabels},
              $gw->{spec}{template}{metadata}{labels},
              "$o: the PDB selects the gateway pods");
    my $hpa = one($o, 'HorizontalPodAutoscaler', 'sandbox-gateway');
    is_deeply($hpa->{spec}{scaleTargetRef}, { apiVersion => 'apps/v1',
              kind => 'Deployment', name => 'sandbox-gateway' },
              "$o: the HPA scales the gateway");
    ok(!exists $gw->{spec}{replicas}, "$o: the HPA alone sets the gateway's replicas");
}

# the check can fail: a misspelt field, a missing one, a wrong type
{
    my $pdb = decode_json(encode_json(one('gke', 'PodDisruptionBudget',
                                          'sandbox-gateway')));
    $pdb->{spec}{maxUnavailabel} = delete $pdb->{spec}{maxUnavailable};
    like(join("\n", schema_errors($pdb)), qr/\.spec\.maxUnavailabel: unknown field/,
         'schema: a misspelt PDB field is refused');
    my $hpa = decode_json(encode_json(one('gke', 'HorizontalPodAutoscaler',
                                          'sandbox-gateway')));
    delete $hpa->{spec}{maxReplicas};
    $hpa->{spec}{metrics}[0]{resource}{target}{averageUtilization} = '70';
    my $e = join "\n", schema_errors($hpa);
    like($e, qr/\.spec\.maxReplicas: required/, 'schema: maxReplicas is required');
    like($e, qr/averageUtilization: string where integer/,
         'schema: a string is no integer');
    $hpa->{spec}{maxReplicas} = 2**31;
    like(join("\n", schema_errors($hpa)), qr/not an int32/, 'schema: int32 range');
}

### the rest judged by a real kube-apiserver

my $k = SbxKube->start($t);
unless ($k) {
    done_testing;
    exit;
}
my $kc = $k->kubeconfig;

is(($k->call('POST', '/api/v1/namespaces', encode_json({ apiVersion => 'v1',
        kind => 'Namespace', metadata => { name => 'sandbox-gateway' } })))[0],
   201, 'namespace sandbox-gateway (README: created with the Secret)');
ok($k->install_crd, 'Sandbox CRD installed');

# does the server serve this kind in this version?
my %served;
sub served {
    my ($d) = @_;
    my $gv = $d->{apiVersion};
    return $served{"$gv $d->{kind}"} //= do {
        my ($code, $r) = $k->call('GET', $gv =~ m{/} ? "/apis/$gv" : "/api/$gv");
        $code == 200 && grep { $_->{kind} eq $d->{kind} } @{ $r->{resources} };
    } ? 1 : 0;
}

for my $o (qw(gke dev)) {
    my @judged = grep { served($_) } @{ $docs{$o} };
    my @left = grep { !served($_) } @{ $docs{$o} };
    ok(!grep({ !$newer{"$_->{apiVersion} $_->{kind}"} } @left),
       "$o: the server judges all but " . join(', ', map { "$_->{apiVersion} "
       . "$_->{kind}" } @left) . ' (checked against the schema above)');
    my $file = list_file("$dir/$o-judged.json", @judged);
    my $out = `$kubectl --kubeconfig $kc apply --dry-run=server -f $file 2>&1`;
    is($?, 0, "$o: kubectl apply --dry-run=server accepts " . scalar(@judged)
       . ' objects') or diag($out);
    is(scalar(() = $out =~ /\(server dry run\)$/mg), scalar(@judged),
       "$o: each one created (server dry run)");

    # the whole overlay, as README applies it: only the kinds left fail
    my $cmd = "$kubectl --kubeconfig $kc apply -k $root/deploy/overlays/$o"
              . ' --dry-run=server 2>&1';
    $out = `$cmd`;
    my %unknown;
    $unknown{"$2 $1"} = 1
        while $out =~ /no matches for kind "(\w+)" in version "([^"]+)"/g;
    is_deeply(\%unknown, { map { ("$_->{apiVersion} $_->{kind}" => 1) } @left },
              "$o: kubectl apply -k: only those are unknown to this server");
    is(scalar(() = $out =~ /\(server dry run\)$/mg), scalar(@judged),
       "$o: kubectl apply -k: everything else passes the dry run");
}

# the dry run can fail: an invalid Deployment is refused
{
    my $gw = decode_json(encode_json(one('gke', 'Deployment', 'sandbox-gateway')));
    $gw->{spec}{template}{spec}{containers}[0]{ports}[0]{containerPort} = 70000;
    my $file = list_file("$dir/bad.json", $gw);
    my $out = `$kubectl --kubeconfig $kc apply --dry-run=server -f $file 2>&1`;
    isnt($?, 0, 'dry run: an invalid port is refused');
    like($out, qr/containerPort/, 'dry run: with the server\'s reason');
}

### sandbox-syncd with the manifests' ServiceAccount

my $syncd = $t->syncd_binary;
SKIP: {
skip "$syncd not built", 1 unless -x $syncd;

my @rbac = grep { $_->{kind} =~ /^(?:ServiceAccount|(?:Cluster)?Role(?:Binding)?)$/ }
           @{ $docs{gke} };
is(scalar @rbac, 5, 'the RBAC objects of the gke overlay');
my $file = list_file("$dir/rbac.json", @rbac);
my $out = `$kubectl --kubeconfig $kc apply -f $file 2>&1`;
is($?, 0, 'created in the cluster') or diag($out);

my $token = $k->sa_token('sandbox-gateway', 'sandbox-syncd');
ok($token, 'a token for sandbox-syncd through the TokenRequest API');
spew("$dir/sa-token", "$token\n");

my ($key, $rt_port) = SbxKube->gateway($t, <<'EOF');
        sandbox_sync_max_lag 2s;
        location = /health { sandbox_api; }
EOF

# the readiness probe before any daemon wrote: not ready
my %probe = (GATEWAY_HEALTH_PORT => $t->port(1),
             GATEWAY_READY_MARK => "$dir/was-ready");
sub probe {
    local @ENV{ keys %probe } = values %probe;
    my $err = `/usr/bin/perl $root/deploy/base/gateway-ready.pl 2>&1`;
    return ($? >> 8, $err);
}
my ($rc, $err) = probe();
is($rc, 1, 'readiness: not ready before sandbox-syncd listed');
like($err, qr/sync state unknown/, 'readiness: says why');

my $sa_env = $k->daemon_env($t, K8S_TOKEN_FILE => "$dir/sa-token");
$t->spawn('syncd', $sa_env, $syncd, '--watch-timeout', '5',
          '--lease', 'sandbox-gateway/sandbox-syncd', '--lease-duration', '3',
          '--template', "$root/conf/sandbox-template.json");
*wait_for = \&SbxKube::wait_for;

my $lease = '/apis/coordination.k8s.io/v1/namespaces/sandbox-gateway/leases/sandbox-syncd';
ok(wait_for(sub { my ($c, $l) = $k->call('GET', $lease);
                  $c == 200 && $l->{spec}{holderIdentity} }, 15),
   'lease: created and held with the ServiceAccount');
ok(wait_for(sub { (probe())[0] == 0 }, 15), 'readiness: ready once listed');
ok(-e "$dir/was-ready", 'readiness: remembered');
{
    # the runtime's /health: 200, but no Redis or sync state in it, so
    # only a mark makes it ready; a mark older than nginx's pid file is
    # from before a restart of the container
    local $probe{GATEWAY_PID_FILE} = "$dir/nginx-started";
    local $probe{GATEWAY_HEALTH_PORT} = $rt_port;
    spew("$dir/nginx-started", "1\n");
    utime time - 10, time - 10, "$dir/was-ready";
    my ($rc, $err) = probe();
    is($rc, 1, 'readiness: a mark from before nginx started does not count');
    like($err, qr/Redis unknown/, 'readiness: checked in full again');
    utime time - 20, time - 20, "$dir/nginx-started";
    utime undef, undef, "$dir/was-ready";
    is((probe())[0], 0, 'readiness: a mark from after it does');
}

sub route_field { $t->redis('HGET', "sbx:route:alice:$_[0]", $_[1]) }
sub get {
    $t->http('GET', "/proxy/$_[0]/_debug/k",
             headers => { Authorization => "Bearer $key" });
}

# t/30's flows: watch → route → request; pause, resume, delete; the queue
is($k->create('sb1', port => $rt_port), 201, 'Sandbox created (as the controller)');
ok(wait_for(sub { defined route_field('sb1', 'rv') }), 'list/watch: its route');
is($k->set_ready('sb1', podIPs => ['127.0.0.1']), 200, 'ready');
ok(wait_for(sub { get('sb1')->{status} == 200 }), 'request reaches the pod');

sub queue {
    my ($op, $name) = @_;
    $t->redis('XADD', 'sbx:ops', '*', op => $op, user => 'alice', name => $name,
              namespace => 'user-alice', image => 'example/aio:1',
              requested_at => int time);
}
my $uns = '/apis/agents.x-k8s.io/v1beta1/namespaces/user-alice/sandboxes';
$t->redis('HSET', 'sbx:sandbox:alice:sb2', name => 'sb2', user => 'alice',
          state => 'creating');
queue('create', 'sb2');
ok(wait_for(sub { ($k->call('GET', "$uns/sb2"))[0] == 200 }),
   'create: namespace and Sandbox created');
ok(wait_for(sub { ($t->redis('HGET', 'sbx:sandbox:alice:sb2', 'state') // '')
                  eq 'active' }), 'create: recorded');
queue('pause', 'sb2');
ok(wait_for(sub { (($k->call('GET', "$uns/sb2"))[1]{spec}{operatingMode} // '')
                  eq 'Suspended' }), 'pause: patched');
queue('resume', 'sb2');
ok(wait_for(sub { (($k->call('GET', "$uns/sb2"))[1]{spec}{operatingMode} // '')
                  eq 'Running' }), 'resume: patched');
queue('delete', 'sb2');
ok(wait_for(sub { ($k->call('GET', "$uns/sb2"))[0] == 404 }), 'delete: gone');
ok(wait_for(sub { $t->redis('XPENDING', 'sbx:ops', 'syncd')->[0] == 0 }),
   'every operation acknowledged');
is($k->delete('sb1'), 200, 'Sandbox deleted (as the controller)');
ok(wait_for(sub { !defined route_field('sb1', 'rv') }), 'watch: route removed');
unlike($t->read_file('syncd.out'), qr/HTTP 403/, 'the daemon was never refused');

# what the account may not do
my %refused = (
    'DELETE /api/v1/namespaces/user-alice' => 'delete a namespace',
    'GET /api/v1/namespaces/default/secrets' => 'list secrets',
    'GET /api/v1/namespaces' => 'list namespaces',
    "GET $uns/sb2" => 'get one Sandbox (it lists and watches)',
    'GET /apis/coordination.k8s.io/v1/namespaces/sandbox-gateway/leases/other'
        => 'read another Lease',
    'GET /apis/coordination.k8s.io/v1/namespaces/default/leases/sandbox-syncd'
        => 'read a Lease in another namespace',
    'POST /api/v1/namespaces/default/pods' => 'create pods',
);
for my $call (sort keys %refused) {
    my ($m, $p) = split / /, $call;
    my ($code) = $k->call_as($token, $m, $p, $m eq 'POST' ? '{}' : undef);
    is($code, 403, "refused: $refused{$call}");
}
is(($k->call_as($token, 'GET', '/apis/agents.x-k8s.io/v1beta1/sandboxes'))[0],
   200, 'allowed: list Sandboxes (the refusals are RBAC, not the token)');

# readiness: once ready, a stale daemon does not take the pod out
$t->reap('syncd', 'TERM');
ok(wait_for(sub { ($t->json($t->http('GET', '/health'))->{sync}{state} // '')
                  eq 'stale' }, 10), '/health: stale without the daemon');
is((probe())[0], 0, 'readiness: still ready (Redis and the daemon are shared)');
unlink "$dir/was-ready";
is((probe())[0], 0, 'readiness: a stale route table counts as listed');

### preStop: requests in flight finish, nginx exits, then the hook returns

is($k->create('slow', port => $rt_port), 201, 'a sandbox for a slow request');
$t->spawn('syncd', $sa_env, $syncd, '--watch-timeout', '5');
is($k->set_ready('slow', podIPs => ['127.0.0.1']), 200, 'ready');
ok(wait_for(sub { get('slow')->{status} == 200 }), 'served');

my $body = encode_json({ command => 'sleep 3; echo drained' });
my $slow = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $t->port(1))
    or die "connect: $!";
print $slow "POST /proxy/slow/v1/shell/exec HTTP/1.1\r\nHost: localhost\r\n"
    . "Authorization: Bearer $key\r\nContent-Type: application/json\r\n"
    . 'Content-Length: ' . length($body) . "\r\nConnection: close\r\n\r\n$body";
sleep 0.3;

my $nginx = delete $t->{pids}{nginx};
my $t0 = time;
$t->spawn('prestop', { GATEWAY_DRAIN_SECONDS => 1,
                       GATEWAY_CONF => "$dir/nginx.conf",
                       GATEWAY_PID_FILE => "$dir/nginx.pid",
                       GATEWAY_PREFIX => "$dir/",
                       GATEWAY_NGINX => $t->nginx_binary },
          '/bin/sh', "$root/deploy/base/gateway-stop.sh");
is(get('slow')->{status}, 200, 'preStop: still serving while the LB deregisters');
my $raw = do { local $/; <$slow> } // '';
close $slow;    # else nginx lingers on it (lingering_timeout)
my $answered = time;
like($raw, qr{^HTTP/1\.1 200}, 'the request in flight finished: 200');
like($raw, qr/drained/, 'with its whole answer');
my $prestop = $t->{pids}{prestop};
ok(waitpid($prestop, WNOHANG) == 0, 'the hook waits while nginx serves it');
my $exited;
wait_for(sub { $exited = time if waitpid($nginx, WNOHANG) == $nginx; $exited }, 20);
ok($exited, sprintf 'nginx exited %.1f s after preStop began, %.1f s after '
   . 'the last answer', ($exited // 0) - $t0, ($exited // 0) - $answered);
cmp_ok(($exited // 0) - $t0, '>=', 1, 'not before the drain delay');
ok(wait_for(sub { waitpid($prestop, WNOHANG) == $prestop }, 10),
   'the hook returns once nginx is gone');
delete $t->{pids}{prestop};
$t->reap('syncd', 'TERM');

$t->error_log_ok;
$t->spawned_ok;
}

done_testing;
