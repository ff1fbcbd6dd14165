{#- Continuous percentile (linear interpolation between the two nearest values, like numpy's
    default and PostgreSQL's percentile_cont) of `expr` over the rows of the group, as an
    aggregate: `{{ percentile_cont('hours', 0.9) }}`. Nulls are ignored; a group with no
    non-null value gives null. Works with GROUP BY and GROUPING SETS on both backends. -#}
{% macro percentile_cont(expr, fraction) -%}
    {{ return(adapter.dispatch('percentile_cont')(expr, fraction)) }}
{%- endmacro %}

{% macro default__percentile_cont(expr, fraction) -%}
    quantile_cont({{ expr }}, {{ fraction }})
{%- endmacro %}

{% macro postgres__percentile_cont(expr, fraction) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expr }})
{%- endmacro %}

{#- The median: percentile_cont at 0.5. -#}
{% macro median(expr) -%}
    {{ percentile_cont(expr, 0.5) }}
{%- endmacro %}

{#- Fractional hours / days from one timestamp to another (whole seconds, as the CRMs record
    them), portable through dbt's datediff. -#}
{% macro hours_between(start_ts, end_ts) -%}
    (cast({{ dbt.datediff(start_ts, end_ts, 'second') }} as double precision) / 3600.0)
{%- endmacro %}

{% macro days_between(start_ts, end_ts) -%}
    (cast({{ dbt.datediff(start_ts, end_ts, 'second') }} as double precision) / 86400.0)
{%- endmacro %}
