{#-
  The column rules of one model in one query (one dbt node instead of one per column and rule):
  not_null, non_negative (nulls pass), between {column: {min_value, max_value}} (nulls pass)
  and accepted_values {column: [values]} (nulls pass). dbt spends ~47 ms a node whatever its
  size, so ~600 one-column tests cost more than the models they check. Returns one row per
  broken rule, naming the column, the rule and how many rows break it.
-#}
{% test column_values(model, not_null=[], non_negative=[], between={}, accepted_values={}) %}

{%- set rules = [] -%}
{%- for column in not_null -%}
    {%- do rules.append((column, 'not_null', column ~ ' is null')) -%}
{%- endfor -%}
{%- for column in non_negative -%}
    {%- do rules.append((column, 'non_negative', column ~ ' < 0')) -%}
{%- endfor -%}
{%- for column, bounds in between.items() -%}
    {%- set outside = [] -%}
    {%- if bounds.get('min_value') is not none -%}{%- do outside.append(column ~ ' < ' ~ bounds['min_value']) -%}{%- endif -%}
    {%- if bounds.get('max_value') is not none -%}{%- do outside.append(column ~ ' > ' ~ bounds['max_value']) -%}{%- endif -%}
    {%- do rules.append((column, 'between', outside | join(' or '))) -%}
{%- endfor -%}
{%- for column, values in accepted_values.items() -%}
    {%- set listed = [] -%}
    {%- for value in values -%}
        {%- do listed.append(value if value is number else "'" ~ value ~ "'") -%}
    {%- endfor -%}
    {%- do rules.append((column, 'accepted_values', column ~ ' not in (' ~ listed | join(', ') ~ ')')) -%}
{%- endfor -%}

with broken as (
    select
    {%- for column, rule, condition in rules %}
        sum(case when {{ condition }} then 1 else 0 end) as rule_{{ loop.index }}{{ ',' if not loop.last }}
    {%- endfor %}
    from {{ model }}
)
{%- for column, rule, condition in rules %}
select '{{ column }}' as column_name, '{{ rule }}' as rule, rule_{{ loop.index }} as failing_rows
from broken
where rule_{{ loop.index }} > 0
{{ 'union all' if not loop.last }}
{%- endfor %}

{% endtest %}
