{#-
    Portable parsing of values that sources deliver as text: Bitrix24's legacy `crm.*.list`
    methods stringify every scalar, and files land every cell as written. Each macro takes a
    SQL expression (often a json_str(...) call) and returns a typed SQL expression; empty text
    is treated as missing (NULL) everywhere.
-#}

{#-
    ISO 8601 text -> local timestamp (without zone) in the reporting time zone.
    '2026-01-02T09:15:07+03:00' is placed in time by its offset (a `Z` suffix is UTC), then
    shown in var('reporting_timezone'). A value without an offset cannot be placed in time:
    it is taken as already local (Bitrix24 portals report in their own zone, which the
    reporting zone is expected to be) instead of depending on the session time zone.
    DuckDB reads the offset with its built-in ICU extension; PostgreSQL casts to timestamptz;
    both then convert with `at time zone`.
-#}
{% macro iso_to_local(iso_text) -%}
    {{ return(adapter.dispatch('iso_to_local', 'voronka')(iso_text)) }}
{%- endmacro %}

{% macro default__iso_to_local(iso_text) -%}
    {%- set t = "nullif(trim(" ~ iso_text ~ "), '')" -%}
    case
        when {{ t }} is null then null
        -- an offset (+03:00, -05:00, +0300) or Z after the date part
        when upper({{ t }}) like '%Z'
            or substr({{ t }}, 11) like '%+%'
            or substr({{ t }}, 11) like '%-%'
            then cast({{ t }} as timestamp with time zone)
                at time zone '{{ var("reporting_timezone") }}'
        else cast(replace({{ t }}, 'T', ' ') as timestamp)
    end
{%- endmacro %}

{#-
    Money as people and accounting tools write it -> numeric(18,2): spaces and no-break
    spaces are thousands separators ('15 000,50'); a lone comma with no dot is the decimal
    point. Empty -> NULL. ('45000.00', '45 000,5', '1000' all parse.)
-#}
{% macro parse_money(money_text) -%}
    {%- set t = "nullif(replace(replace(trim(" ~ money_text ~ "), ' ', ''), chr(160), ''), '')" -%}
    {{ voronka.money(
        "case when " ~ t ~ " like '%,%' and " ~ t ~ " not like '%.%' then replace("
        ~ t ~ ", ',', '.') else " ~ t ~ " end"
    ) }}
{%- endmacro %}

{#-
    A date as the files contract allows it -> date: YYYY-MM-DD or DD.MM.YYYY, either
    optionally followed by a time (after ' ' or 'T'). Empty -> NULL. Pass a trimmed
    expression (a CTE column): it is repeated several times.
-#}
{% macro parse_date_text(date_text) -%}
    case
        when nullif({{ date_text }}, '') is null then null
        -- DD.MM.YYYY (no hyphen)
        when {{ date_text }} not like '%-%'
            then cast(
                split_part(split_part({{ date_text }}, ' ', 1), '.', 3)
                || '-' || lpad(split_part({{ date_text }}, '.', 2), 2, '0')
                || '-' || lpad(split_part({{ date_text }}, '.', 1), 2, '0')
                as date
            )
        -- ISO, possibly with a time after ' ' or 'T'
        else cast(split_part(split_part({{ date_text }}, ' ', 1), 'T', 1) as date)
    end
{%- endmacro %}

{#-
    Currency of a money value from a file: the ISO code as written (upper-cased), or, when
    the cell is empty, var('files_default_currency') (default: env VORONKA_CURRENCY, else
    'RUB'): a file that does not say is in the account currency.
-#}
{% macro file_currency(currency_text) -%}
    coalesce(
        nullif(upper(trim({{ currency_text }})), ''),
        '{{ var("files_default_currency", env_var("VORONKA_CURRENCY", "") or "RUB") | upper | trim }}'
    )
{%- endmacro %}

{#-
    Bitrix24 flags -> boolean: 'Y'/'N' (legacy methods), JSON true/false (newer methods and
    user.get), '1'/'0'. Anything else (or missing) -> NULL.
-#}
{% macro yn_to_bool(flag_text) -%}
    case
        when upper(trim({{ flag_text }})) in ('Y', 'TRUE', '1') then true
        when upper(trim({{ flag_text }})) in ('N', 'FALSE', '0') then false
    end
{%- endmacro %}

{#-
    An optional reference id sent as text -> bigint. Bitrix24 writes a missing link as null,
    '' or '0' (ids start at 1), all of which become NULL.
-#}
{% macro optional_id(id_text) -%}
    cast(nullif(nullif(trim({{ id_text }}), ''), '0') as bigint)
{%- endmacro %}

{#- A UTM / tag value for matching: trimmed, lower-cased, NULL when empty, formula-safe. -#}
{% macro tag_value(text) -%}
    {{ voronka.safe_text("nullif(lower(trim(" ~ text ~ ")), '')") }}
{%- endmacro %}

{#- The UTM columns of a record, each a `tag_value` named after its tag: `prefix` qualifies the
    source columns ('parsed.'), `names` picks the tags (all five by default). -#}
{% macro utm_columns(prefix='', names=('utm_source', 'utm_medium', 'utm_campaign',
                                        'utm_content', 'utm_term')) -%}
    {%- for name in names %}
        {{ voronka.tag_value(prefix ~ name) }} as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{#-
    The calendar day at the start of an ISO date or timestamp text ('1984-06-17',
    '1984-06-17T00:00:00+03:00') -> date, its time and offset ignored (a birthday is a day,
    not an instant). Anything else ('', null) -> NULL.
-#}
{% macro date_prefix(iso_text) -%}
    case
        when {{ iso_text }} like '____-__-__%' then cast(substr({{ iso_text }}, 1, 10) as date)
    end
{%- endmacro %}
