package SbxStack;

# The whole stack the client tests run against, as t/14, t/16 and t/33
# each set it up: a real kube-apiserver with the Sandbox CRD, Redis, nginx
# with the shipped conf/nginx.conf, sandbox-syncd with a template whose
# sandboxes listen on a free port, and scripts/local-controller.pl
# starting each Sandbox as a runtime process on loopback addresses far
# from the demo's (127.0.0.2, .3, ...), as other tests may run it.  And
# what those tests do with it: users and keys made through the admin API,
# a sandbox created through the API and waited for, Node and the npm
# clients.
#
# start() skips the whole test (plan skip_all) when sandbox-syncd is not
# built or no kube-apiserver can be had, and counts one test: the CRD
# installed.

use strict;
use warnings;

use Carp qw(croak);
use JSON::PP;
use Test::More;
use SbxTest;
use SbxKube;

# %o: conf => a sub given the rendered nginx.conf's text, returning it
#     changed; syncd => more arguments for sandbox-syncd; ip_offset => added
#     to the pid that picks the first address (tests run at the same time
#     pick apart)
sub start {
    my ($class, %o) = @_;
    my $t = SbxTest->new;
    my $syncd = $t->syncd_binary;
    plan skip_all => "$syncd not built" unless -x $syncd;
    my $k = SbxKube->start($t);
    plan skip_all => 'no kube-apiserver (t/k8s/build-apiserver.sh)' unless $k;
    ok($k->install_crd, 'the Sandbox CRD installed');

    $t->redis_start;
    $t->write_shipped_conf;
    if ($o{conf}) {
        my $f = $t->dir . '/nginx.conf';
        my $conf = $o{conf}->($t->read_file($f));
        open my $out, '>', $f or croak $!;
        print $out $conf;
        close $out;
    }
    $t->nginx_start;

    my $self = bless {
        t => $t, k => $k, syncd => $syncd,
        pod_port => $t->port('pods'),
        first_ip => 100 + (($$ + ($o{ip_offset} // 0)) % 100),
        template => $t->dir . '/template.json',
    }, $class;

    # the shipped template, its sandboxes on the free port
    my $root = $t->root;
    open my $in, '<', "$root/conf/sandbox-template.json" or croak $!;
    my $tpl = decode_json(do { local $/; <$in> });
    $tpl->{metadata}{annotations}{'agents.x-k8s.io/port'} = "$self->{pod_port}";
    open my $out, '>', $self->{template} or croak $!;
    print $out encode_json($tpl);
    close $out;

    $self->spawn_syncd('syncd', {}, @{ $o{syncd} || [] });
    $self->spawn_controller('controller');
    return $self;
}

sub t { $_[0]{t} }
sub k { $_[0]{k} }
sub syncd { $_[0]{syncd} }
sub pod_port { $_[0]{pod_port} }
sub first_ip { $_[0]{first_ip} }
sub template { $_[0]{template} }

# sandbox-syncd carrying out operations with the template; $env adds to
# (or replaces) the daemon's environment
sub spawn_syncd {
    my ($self, $name, $env, @args) = @_;
    my ($t, $k) = @$self{qw(t k)};
    return $t->spawn($name, $k->daemon_env($t, %{ $env || {} }), $self->{syncd},
                     '--watch-timeout', '5', '--template', $self->{template},
                     @args);
}

# the local controller; %o: ip => its first address's last byte, args =>
# more arguments
sub spawn_controller {
    my ($self, $name, %o) = @_;
    my ($t, $k) = @$self{qw(t k)};
    return $t->spawn($name, {}, $^X, $t->root . '/scripts/local-controller.pl',
                     '--api', $k->api, '--token-file', $k->token_file,
                     '--ca-file', $k->ca_file, '--workdir', $t->dir,
                     '--first-ip', $o{ip} // $self->{first_ip},
                     @{ $o{args} || [] });
}

# a user and a key for it, as the operator makes them (the admin API);
# returns the key
sub user_key {
    my ($self, $user, $key_name) = @_;
    my $t = $self->{t};
    my %h = (Authorization => 'Bearer ' . $t->admin_key,
             'Content-Type' => 'application/json');
    my $res = $t->http('POST', '/api/admin/users', headers => \%h,
                       body => encode_json({ username => $user }));
    my $uid = ($t->json($res) // {})->{user}{id}
        // croak "user $user: $res->{status} $res->{body}";
    $res = $t->http('POST', "/api/admin/users/$uid/apikeys", headers => \%h,
                    body => encode_json({ name => $key_name }));
    return ($t->json($res) // {})->{api_key}
        // croak "key for $user: $res->{status} $res->{body}";
}

# POST /api/sandboxes with $body (JSON text), each call on a connection of
# its own; %h: more headers.  Returns the response
sub create_sandbox {
    my ($self, $key, $body, %h) = @_;
    return $self->{t}->http('POST', '/api/sandboxes',
                            headers => { %h, Authorization => "Bearer $key",
                                         Connection => 'close',
                                         'Content-Type' => 'application/json' },
                            body => $body);
}

# waits, at most $secs, until GET /api/sandboxes/:name says ready
sub sandbox_ready {
    my ($self, $key, $name, $secs, %h) = @_;
    my $t = $self->{t};
    return SbxKube::wait_for(sub {
        my $r = $t->http('GET', "/api/sandboxes/$name",
                         headers => { %h, Authorization => "Bearer $key",
                                      Connection => 'close' });
        ($t->json($r) // {})->{ready};
    }, $secs // 60);
}

# Node 18 or later (fetch), which the npm clients need
sub has_node {
    return `node --version 2>/dev/null` =~ /^v(\d+)/ && $1 >= 18;
}

# An npm client installed by its script in t/clients (once, into the
# cache): (the directory whose node_modules holds it) or (undef, why not)
sub npm_client {
    my ($self, $script) = @_;
    my $root = $self->{t}->root;
    chomp(my $out = `$root/t/clients/$script 2>&1`);
    my $dir = (split /\n/, $out)[-1] // '';
    return ($dir) if $? == 0 && -d "$dir/node_modules";
    return (undef, $out);
}

1;
