{#-
  The Bitrix24 user field a portal keeps its loss reason in (var `bitrix24_loss_reason_field`,
  e.g. UF_CRM_LOSS_REASON; null = none, the failure stage is the reason): its trimmed text, null
  when empty or absent. A string field: an enumeration field would hold its item id. The name
  must look like a user field (UF_ followed by letters, digits, underscores), so it cannot
  smuggle SQL into the JSON path.
-#}
{% macro bitrix24_loss_reason_field(payload) -%}
    {%- set field = var('bitrix24_loss_reason_field', none) -%}
    {%- if field -%}
        {%- if not modules.re.match('^UF_[A-Z0-9_]+$', field | string) -%}
            {{ exceptions.raise_compiler_error(
                "var bitrix24_loss_reason_field must name a user field (UF_...), got '"
                ~ field ~ "'") }}
        {%- endif -%}
        nullif(trim({{ safe_text(json_str(payload, field)) }}), '')
    {%- else -%}
        cast(null as {{ dbt.type_string() }})
    {%- endif -%}
{%- endmacro %}
