-- One row per pipeline stage: (pipeline_id, status_id). Won (142) and lost (143) repeat in
-- every pipeline, so the status id alone is not a key.
with

source as (

    {{ raw_source('amocrm', 'amocrm__pipelines') }}

),

latest as (

    {{ latest_version('source') }}

),

statuses as (

    select
        latest.account,
        cast(latest.record_id as bigint) as pipeline_id,
        {{ safe_text(json_str('latest.payload', 'name')) }} as pipeline_name,
        cast({{ json_str('latest.payload', 'sort') }} as integer) as pipeline_sort,
        coalesce({{ json_str('latest.payload', 'is_main') }} = 'true', false) as is_main_pipeline,
        coalesce({{ json_str('latest.payload', 'is_archive') }} = 'true', false)
            as is_archived_pipeline,
        cast({{ json_str('s.value', 'id') }} as bigint) as status_id,
        {{ safe_text(json_str('s.value', 'name')) }} as stage_name,
        cast({{ json_str('s.value', 'sort') }} as integer) as stage_sort,
        cast({{ json_str('s.value', 'type') }} as integer) as stage_type
    from latest
    {{ json_array_elements('latest.payload', '_embedded.statuses', 's') }}

),

renamed as (

    select
        account,
        pipeline_id,
        status_id,
        pipeline_name,
        pipeline_sort,
        is_main_pipeline,
        is_archived_pipeline,
        stage_name,
        stage_sort,
        stage_type,
        status_id = {{ var('won_status_id') }} as is_won,
        status_id = {{ var('lost_status_id') }} as is_lost,
        -- open stages: incoming (type 1) and regular (type 0) stages other than won/lost
        status_id not in ({{ var('won_status_id') }}, {{ var('lost_status_id') }})
            as is_open_stage
    from statuses

)

select * from renamed
