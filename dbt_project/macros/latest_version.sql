{#-
    Raw tables keep every version of a record (landing is append-only and idempotent).
    Staging reads the newest version per (account, record_id): by the source's updated_at,
    then by when voronka extracted it; the payload hash only makes ties deterministic.
-#}
{% macro latest_version(relation) -%}
    select ranked.*
    from (
        select
            versions.*,
            row_number() over (
                partition by versions.account, versions.record_id
                order by
                    versions.updated_at desc nulls last,
                    versions.extracted_at desc,
                    versions.payload_hash desc
            ) as version_rank
        from {{ relation }} as versions
    ) as ranked
    where ranked.version_rank = 1
{%- endmacro %}
