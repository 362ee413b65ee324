package SbxKube;

# The test cluster (t/k8s/cluster.sh) seen from a test: started in the
# test's directory and stopped with it, the Sandbox CRD installed, and a
# small client on curl(1) for the calls tests make as "the controller".

use strict;
use warnings;

use Carp qw(croak);
use JSON::PP;
use Time::HiRes qw(time sleep);

# Clusters are stopped in an END block: it runs before File::Temp's, which
# removes the directory holding their pid files (global destruction would
# come too late).
my @clusters;

# starts a cluster under $t->dir/k8s; returns undef if none can be had
sub start {
    my ($class, $t, %o) = @_;
    my $dir = $t->dir . '/k8s';
    my $root = $t->root;
    my %env = map { /^(\w+)=(.*)$/ ? ($1, $2) : () }
              `$root/t/k8s/cluster.sh start $dir 2>&1`;
    return undef unless $env{K8S_API};

    my $self = bless { %env, dir => $dir, root => $root,
                       version => $o{version} // 'v1beta1' }, $class;
    push @clusters, [$$, $root, $dir];
    $self->write_token($env{K8S_TOKEN});
    return $self;
}

END {
    for my $c (@clusters) {
        my ($pid, $root, $dir) = @$c;
        system("$root/t/k8s/cluster.sh stop $dir >/dev/null 2>&1")
            if $pid == $$;
    }
}

# what the daemon's tests route through: Redis, one demo runtime, user
# "alice" with a key, and nginx with the module on port 1 (and $extra in
# its server block); returns (key, runtime port).  A paused sandbox
# answers 503 here (sandbox_wake off): these tests read the route table
# through it, and t/76-wake.t tests waking.
sub gateway {
    my ($class, $t, $extra) = @_;
    $t->redis_start;
    my ($port) = $t->runtime_start(id => 'pod') =~ /:(\d+)$/;
    $t->add_user('alice');
    my $key = $t->add_key('alice');
    $extra //= '';
    $t->write_conf($t->base_conf(http => <<"EOF"));
    sandbox_redis %%REDIS%%;
    sandbox_cache_zone k8s:16m;
    upstream pods { sandbox_balancer keepalive=4; }
    server {
        listen 127.0.0.1:%%PORT_1%%;
$extra
        location / {
            sandbox_route on;
            sandbox_wake off;
            proxy_pass http://pods\$sandbox_uri;
        }
    }
EOF
    $t->nginx_start;
    return ($key, $port);
}

sub dir { $_[0]{dir} }
sub api { $_[0]{K8S_API} }
sub ca_file { $_[0]{K8S_CA_FILE} }
sub token_file { "$_[0]{dir}/token" }
sub kubeconfig { $_[0]{K8S_KUBECONFIG} }

# the token file daemons read, and the token this client uses
sub write_token {
    my ($self, $token) = @_;
    $self->{K8S_TOKEN} = $token;
    open my $fh, '>', $self->token_file or croak "token: $!";
    print $fh "$token\n";
    close $fh;
}

# the environment of a daemon that uses a token file
sub daemon_env {
    my ($self, $t, %more) = @_;
    return { K8S_API => $self->api, K8S_TOKEN_FILE => $self->token_file,
             K8S_CA_FILE => $self->ca_file, SANDBOX_REDIS => $t->redis_addr,
             SANDBOX_API_VERSION => $self->{version}, %more };
}

# (HTTP status, decoded body) of one API call
sub call {
    my ($self, $method, $path, $body, $type) = @_;
    my @cmd = ('curl', '-s', '--cacert', $self->ca_file, '-X', $method,
               '-H', "Authorization: Bearer $self->{K8S_TOKEN}",
               '-w', '\n%{http_code}');
    push @cmd, '-H', 'Content-Type: ' . ($type // 'application/json'),
               '--data-binary', $body if defined $body;
    open my $p, '-|', @cmd, $self->api . $path or croak "curl: $!";
    local $/;
    my $out = <$p>;
    close $p;
    my ($json, $code) = $out =~ /^(.*)\n(\d+)$/s;
    return ($code // 0, eval { decode_json($json) });
}

# a token for a service account, minted through the TokenRequest API (the
# apiserver signs it with pki/sa.key, its audience the apiserver's)
sub sa_token {
    my ($self, $ns, $sa, $secs) = @_;
    my ($code, $r) = $self->call('POST',
        "/api/v1/namespaces/$ns/serviceaccounts/$sa/token",
        encode_json({ apiVersion => 'authentication.k8s.io/v1',
                      kind => 'TokenRequest',
                      spec => { expirationSeconds => $secs // 3600 } }));
    return ($code == 200 || $code == 201) ? $r->{status}{token} : undef;
}

# (HTTP status, decoded body) of one API call made with another token
sub call_as {
    my ($self, $token, @call) = @_;
    local $self->{K8S_TOKEN} = $token;
    return $self->call(@call);
}

sub install_crd {
    my ($self) = @_;
    my $file = "$self->{root}/t/k8s/sandbox-crd-$self->{version}.json";
    open my $fh, '<', $file or croak "$file: $!";
    local $/;
    my ($code) = $self->call('POST',
        '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', <$fh>);
    return 0 unless $code == 201;
    return wait_for(sub { ($self->call('GET', $self->sandboxes))[0] == 200 });
}

sub sandboxes {
    my ($self, $ns) = @_;
    return "/apis/agents.x-k8s.io/$self->{version}/namespaces/"
           . ($ns // 'default') . '/sandboxes';
}

# a Sandbox owned by $user whose runtime listens on $port
sub create {
    my ($self, $name, %o) = @_;
    my $obj = { apiVersion => "agents.x-k8s.io/$self->{version}",
                kind => 'Sandbox',
                metadata => { name => $name,
                              labels => { user => $o{user} // 'alice' },
                              annotations => { 'agents.x-k8s.io/port'
                                               => "$o{port}" } },
                spec => { podTemplate => { spec => { containers => [
                    { name => 'sandbox', image => 'aio' } ] } } } };
    return ($self->call('POST', $self->sandboxes, encode_json($obj)))[0];
}

# what the agent-sandbox controller would write: Ready, and the given
# status fields (podIPs, serviceFQDN)
sub set_ready {
    my ($self, $name, %status) = @_;
    my $st = { status => { %status, conditions => [ { type => 'Ready',
                   status => 'True', reason => 'DependenciesReady',
                   message => 'ok',
                   lastTransitionTime => '2026-11-23T00:00:00Z' } ] } };
    return ($self->call('PATCH', $self->sandboxes . "/$name/status",
                        encode_json($st), 'application/merge-patch+json'))[0];
}

# $n Sandboxes "<prefix>1".."<prefix>$n", owners "u1".."u$n", created by
# one curl running 16 transfers at a time; returns how many were created
sub create_bulk {
    my ($self, $n, $prefix, $file) = @_;
    open my $fh, '>', $file or croak "$file: $!";
    for my $i (1 .. $n) {
        my $obj = encode_json({ apiVersion => "agents.x-k8s.io/$self->{version}",
            kind => 'Sandbox',
            metadata => { name => "$prefix$i", labels => { user => "u$i" } },
            spec => { podTemplate => { spec => { containers => [
                { name => 'sandbox', image => 'aio' } ] } } } });
        $obj =~ s/(["\\])/\\$1/g;
        # --next resets per-transfer options: each block carries its own
        print $fh "next\n" if $i > 1;
        print $fh "url = \"", $self->api, $self->sandboxes, "\"\n",
                  "cacert = \"", $self->ca_file, "\"\n",
                  "header = \"Authorization: Bearer $self->{K8S_TOKEN}\"\n",
                  "header = \"Content-Type: application/json\"\n",
                  "data = \"$obj\"\n", "output = \"/dev/null\"\n",
                  "write-out = \"%{http_code}\\n\"\n";
    }
    close $fh;
    open my $curl, '-|', 'curl', '-s', '--no-progress-meter', '--parallel',
         '--parallel-max', '16', '-K', $file or croak "curl: $!";
    my $created = grep { /^201$/ } <$curl>;
    close $curl;
    return $created;
}

sub delete {
    my ($self, $name) = @_;
    return ($self->call('DELETE', $self->sandboxes . "/$name"))[0];
}

sub wait_for {
    my ($cond, $secs) = @_;
    my $until = time + ($secs // 10);
    while (time < $until) { return 1 if $cond->(); sleep 0.05 }
    return 0;
}

1;
