{#- Unix seconds (any numeric or text expression) -> local timestamp in the reporting zone. -#}
{% macro epoch_to_local(epoch_seconds) -%}
    case
        when {{ epoch_seconds }} is not null
            then to_timestamp(cast({{ epoch_seconds }} as bigint))
                at time zone '{{ var("reporting_timezone") }}'
    end
{%- endmacro %}

{#- First day of the month of a date or timestamp, as a date. -#}
{% macro month_start(expr) -%}
    cast({{ dbt.date_trunc('month', expr) }} as date)
{%- endmacro %}

{#- A date shifted by a whole number of months / days, as a date. -#}
{% macro add_months(expr, n) -%}
    cast({{ dbt.dateadd('month', n, expr) }} as date)
{%- endmacro %}

{% macro add_days(expr, n) -%}
    cast({{ dbt.dateadd('day', n, expr) }} as date)
{%- endmacro %}

{#- Whole months from `start` to `end` (both month starts). -#}
{% macro months_between(start, end) -%}
    {{ dbt.datediff(start, end, 'month') }}
{%- endmacro %}

{#- Division that returns NULL instead of failing (or lying) on a zero denominator. -#}
{% macro safe_divide(numerator, denominator) -%}
    (cast({{ numerator }} as double precision)
        / nullif(cast({{ denominator }} as double precision), 0))
{%- endmacro %}

{#- Money in marts: account currency, two decimals. -#}
{% macro money(expr) -%}
    cast(round(cast({{ expr }} as numeric(38, 6)), 2) as numeric(18, 2))
{%- endmacro %}
