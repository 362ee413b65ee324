#!/usr/bin/perl
# The reference documentation and the code agree, read from the sources:
# every directive of the module's command tables has its section in
# docs/directives.md (nginx's Syntax / Default / Context form, the
# contexts those of its flags) and its entry in the README's index, and
# no section documents a directive that does not exist; every variable
# is documented in docs/observability.md; every sandbox-syncd flag, and
# every environment variable it reads, is in docs/sandbox-syncd.md and in
# its usage text.  A directive added without its documentation, or a
# section left behind by a removed one, fails here.

use strict;
use warnings;
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/..";

sub slurp {
    my ($path) = @_;
    open my $f, '<', "$root/$path" or die "$path: $!";
    local $/;
    return scalar <$f>;
}

my @sources = ('ngx_http_sandbox_module.c',
               map { s{^\Q$root\E/}{}r } glob("$root/src/*.c"));

# the command tables: name => set of contexts
my %ctx_name = (NGX_HTTP_MAIN_CONF => 'http', NGX_HTTP_SRV_CONF => 'server',
                NGX_HTTP_LOC_CONF => 'location',
                NGX_HTTP_UPS_CONF => 'upstream');
my (%directive, %variable);
for my $src (@sources) {
    my $c = slurp($src);
    while ($c =~ /ngx_command_t\s+\w+\[\]\s*=\s*\{(.*?)ngx_null_command/gs) {
        my $table = $1;
        while ($table =~ /\{\s*ngx_string\("(\w+)"\),\s*([A-Z_|0-9\s]+?),/g) {
            my ($name, $flags) = ($1, $2);
            $directive{$name} = [ sort map { $ctx_name{$_} // () }
                                  split /\s*\|\s*/, $flags ];
        }
    }
    while ($c =~ /ngx_http_variable_t\s+\w+\[\]\s*=\s*\{(.*?)ngx_http_null_variable/gs) {
        my $table = $1;
        $variable{$1} = 1 while $table =~ /ngx_string\("(\w+)"\)/g;
    }
}

cmp_ok(scalar keys %directive, '>=', 30,
       'the command tables were read (' . (scalar keys %directive)
       . ' directives)');
cmp_ok(scalar keys %variable, '>=', 8,
       'the variable tables were read (' . (scalar keys %variable)
       . ' variables)');

# docs/directives.md: "## name", then a block with Syntax, Default, Context
my $doc = slurp('docs/directives.md');
my %section;
while ($doc =~ /^## (\w+)\n```\n(.*?)```/gms) {
    $section{$1} = $2;
}

for my $name (sort keys %directive) {
    my $s = $section{$name};
    ok($s, "$name: documented in docs/directives.md") or next;
    like($s, qr/^Syntax:\s+\Q$name\E[ ;]/m, "$name: its Syntax line");
    like($s, qr/^Default:\s+\S/m, "$name: its Default line");
    my ($ctx) = $s =~ /^Context:\s+(.*)$/m;
    my @doc_ctx = sort split /,\s*/, $ctx // '';
    is("@doc_ctx", "@{ $directive{$name} }",
       "$name: the contexts documented are its flags'");
}
for my $name (sort keys %section) {
    ok($directive{$name}, "docs/directives.md: $name is a directive");
}

my $readme = slurp('README.md');
for my $name (sort keys %directive) {
    ok($readme =~ qr{\[`\Q$name\E`\]\(docs/directives\.md#\Q$name\E\)},
         "$name: in the README's index");
}

my $obs = slurp('docs/observability.md');
for my $name (sort keys %variable) {
    ok($obs =~ qr/`\$\Q$name\E`/, "\$$name: documented in "
         . 'docs/observability.md');
}

# sandbox-syncd: flags and environment variables
my $syncd = slurp('src/syncd/syncd.c');
my %flag = map { $_ => 1 } $syncd =~ /strcmp\(argv\[i\], "(--[\w-]+)"\)/g;
my %envvar = map { $_ => 1 } $syncd =~ /\benv\("([A-Z_0-9]+)"/g;
cmp_ok(scalar keys %flag, '>=', 15, 'sandbox-syncd\'s flags were read');
my $sdoc = slurp('docs/sandbox-syncd.md');
my ($usage) = $syncd =~ /"usage: sandbox-syncd(.*?);/s;
for my $f (sort keys %flag) {
    ok($sdoc =~ qr/`\Q$f\E[ `]/, "sandbox-syncd $f: in docs/sandbox-syncd.md");
    ok($usage =~ qr/\Q$f\E\b/, "sandbox-syncd $f: in its usage text");
}
for my $e (sort keys %envvar) {
    ok($sdoc =~ qr/\b\Q$e\E\b/, "sandbox-syncd's $e: in docs/sandbox-syncd.md");
}

# the API: every endpoint of the routers' tables is in docs/api.md, its
# method and path as written there (":x" for a parameter, "A|B" for
# alternatives in the method or the last segment)
my @endpoints;
for my $src (@sources) {
    my $c = slurp($src);
    while ($c =~ /ngx_http_sandbox_api_endpoint_t\s+\w+\[\]\s*=\s*\{(.*?)\{ 0, NULL/gs) {
        my $table = $1;
        push @endpoints, [$1, $2]
            while $table =~ /\{\s*SBX_(GET|POST|PUT|DELETE),\s*"([^"]+)"/g;
    }
}
cmp_ok(scalar @endpoints, '>=', 25, 'the API\'s endpoint tables were read ('
       . scalar(@endpoints) . ')');
my $api = slurp('docs/api.md');
for my $e (@endpoints) {
    my ($method, $path) = @$e;
    my @seg = split m{/}, $path, -1;
    my $last = pop @seg;
    my $re = join '/', map { $_ eq ':' ? ':\w+' : quotemeta } @seg;
    $re .= '/' . ($last eq ':' ? ':\w+' : "(?:\\w+\\|)*\Q$last\E(?:\\|\\w+)*");
    ok($api =~ /`(?:[A-Z]+\|)*$method(?:\|[A-Z]+)* $re[`\[ ?]/,
       "$method $path: in docs/api.md");
}

# every documentation link in the README leads to a file that exists
for my $link ($readme =~ /\]\(((?:docs|bench|deploy|conf)\/[^)#]+)/g) {
    ok(-e "$root/$link", "README links to $link, which exists");
}

done_testing();
